"""A .npy file of image rows read and written a few rows at a time, never mapped.

A memory map of a 200,000-image store at 64 px keeps every page it touched in the process's
resident memory: one epoch of training reads them all, and the app's resident size grows by
the store's 2.4 GB. Reading rows with plain file reads leaves the caching to the operating
system's page cache, which gives memory back when others need it, and the process holds one
batch.
"""

from __future__ import annotations

import io
import threading

import numpy as np

# Rows closer than this many rows apart are read in one read.
MERGE_GAP_ROWS = 4


def _header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


class RowFileWriter:
    """Fills a new .npy file of `rows` rows with row assignments (`writer[i] = row`)."""

    def __init__(self, path, rows: int, row_shape: tuple[int, ...], dtype=np.uint8):
        self.path = path
        self.shape = (rows, *row_shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(row_shape)) * self.dtype.itemsize
        header = _header(self.shape, self.dtype)
        self.offset = len(header)
        self._file = open(path, "xb", buffering=0)  # x: never over a file that exists
        self._file.write(header)
        self._file.truncate(self.offset + rows * self.row_bytes)  # sparse until written

    def __setitem__(self, row: int, value: np.ndarray) -> None:
        data = np.ascontiguousarray(value, dtype=self.dtype)
        if data.nbytes != self.row_bytes:
            raise ValueError(f"a row of {self.path} takes {self.row_bytes} bytes, not {data.nbytes}")
        self._file.seek(self.offset + int(row) * self.row_bytes)
        self._file.write(memoryview(data.reshape(-1)).cast("B"))

    def finish(self, rows: int) -> None:
        """Keep the first `rows` rows (skipped files leave the end unused) and close."""
        if rows != self.shape[0]:
            header = _header((rows, *self.shape[1:]), self.dtype)
            if len(header) != self.offset:  # numpy pads headers to a fixed multiple
                raise OSError(f"cannot shorten {self.path} in place")
            self._file.seek(0)
            self._file.write(header)
            self._file.truncate(self.offset + rows * self.row_bytes)
        self.close()

    def close(self) -> None:
        self._file.close()


class RowFile:
    """Read-only rows of a .npy file, indexed like the array (an int, a slice, or an array of
    ints or bools); each access reads just the rows it needs."""

    def __init__(self, path, rows: int | None = None):
        self.path = path
        # numpy parses the header; the map is dropped unread, only its offset and shape kept.
        mapped = np.load(path, mmap_mode="r")
        if mapped.ndim < 1 or not mapped.flags.c_contiguous:
            raise ValueError(f"{path} is not a C-ordered array of rows")
        self.offset, self.dtype, self.row_shape = mapped.offset, mapped.dtype, tuple(mapped.shape[1:])
        total = mapped.shape[0]
        del mapped
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self.rows = total if rows is None else min(rows, total)
        self._file = open(path, "rb", buffering=0)
        self._lock = threading.Lock()  # a seek and its reads are one step; threads read too

    def __len__(self) -> int:
        return self.rows

    def head(self, rows: int) -> "RowFile":
        """The first `rows` rows, as a file of their own (slicing would read them all)."""
        return RowFile(self.path, rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rows, *self.row_shape)

    @property
    def nbytes(self) -> int:
        return self.rows * self.row_bytes

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    def __array__(self, dtype=None, copy=None):
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            row = int(index)
            if row < 0:
                row += self.rows
            if not 0 <= row < self.rows:
                raise IndexError(f"row {index} out of range for {self.rows} rows")
            return self._read_run(row, 1)[0]
        if isinstance(index, slice):
            start, stop, step = index.indices(self.rows)
            if step == 1:
                return self._read_run(start, max(0, stop - start))
            index = np.arange(start, stop, step)
        if isinstance(index, tuple):
            return self[index[0]][(slice(None), *index[1:])]
        rows = np.asarray(index)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64).reshape(-1)
        rows = np.where(rows < 0, rows + self.rows, rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.rows):
            raise IndexError(f"rows out of range for {self.rows} rows")
        return self._read_rows(rows)

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        # Runs of nearby rows are read at once (a sorted batch of a small folder is a few reads);
        # a lone row is read straight into its place.
        breaks = np.flatnonzero(np.diff(ordered) > MERGE_GAP_ROWS) + 1
        starts = [0, *breaks.tolist()]
        ends = [*breaks.tolist(), len(ordered)]
        flat = memoryview(out.reshape(-1)).cast("B")
        size = self.row_bytes
        with self._lock:
            for start, end in zip(starts, ends):
                first, last = int(ordered[start]), int(ordered[end - 1])
                if first == last:
                    place = int(order[start])
                    self._read_into(first, flat[place * size:(place + 1) * size])
                    for again in order[start + 1:end].tolist():  # the same row asked for again
                        out[again] = out[place]
                    continue
                block = np.empty((last - first + 1, *self.row_shape), self.dtype)
                self._read_into(first, memoryview(block.reshape(-1)).cast("B"))
                out[order[start:end]] = block[ordered[start:end] - first]
        return out

    def _read_run(self, first: int, count: int) -> np.ndarray:
        block = np.empty((count, *self.row_shape), self.dtype)
        with self._lock:
            self._read_into(first, memoryview(block.reshape(-1)).cast("B"))
        return block

    def _read_into(self, first: int, view: memoryview) -> None:
        """Fill `view` from row `first` on; the caller holds the lock."""
        self._file.seek(self.offset + first * self.row_bytes)
        done = 0
        while done < len(view):
            got = self._file.readinto(view[done:])
            if not got:
                raise OSError(f"{self.path} ended early: it changed on disk while in use")
            done += got

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __del__(self):
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()
