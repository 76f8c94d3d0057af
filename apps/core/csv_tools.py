"""CSV as LabelPortal writes it: every download (export, dashboards, sanity report) goes through here.

Text a person typed may start with = + - @ (or a tab/CR): a spreadsheet opening the file would run it as a formula,
so such a cell is written with a leading apostrophe. A missing value is an empty cell.
"""

import csv
import io

from django.http import HttpResponse

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A cell value made safe for spreadsheets (see the module docstring); None becomes an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class CSVChunks:
    """A csv writer over a buffer whose text is taken out in chunks: for streamed responses.

        chunks = CSVChunks()
        chunks.writer.writerow(header)
        yield chunks.flush()
    """

    def __init__(self):
        self._buffer = io.StringIO()
        self.writer = csv.writer(self._buffer)

    def flush(self):
        value = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate(0)
        return value


def csv_response(filename, header, rows):
    """A small table as a CSV download; every cell made spreadsheet-safe."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    writer.writerows([spreadsheet_safe(value) for value in row] for row in rows)
    return response
