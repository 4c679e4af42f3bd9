"""A Markdown text file whose kedro-viz preview is the rendered page."""
from __future__ import annotations

from kedro_datasets._typing import HTMLPreview
from kedro_datasets.text import TextDataset
from markdown_it import MarkdownIt


class MarkdownDataset(TextDataset):
    """:class:`kedro_datasets.text.TextDataset` for Markdown: reads and writes the text as is.

    It exists only for kedro-viz, which has no Markdown preview: :meth:`preview` renders the
    file (GitHub tables included) to HTML, so the comparison table reads as a table in the viz.
    """

    def preview(self) -> HTMLPreview:
        """kedro-viz HTML preview: the Markdown rendered (raw HTML in the file is escaped)."""
        md = MarkdownIt("commonmark", {"html": False}).enable("table")
        return HTMLPreview(md.render(self.load()))
