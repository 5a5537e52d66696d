"""A half set's latent table (``train-vae --out-latents``) as tensors aligned with STAR rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dynamight_core.errors import InputError
from dynamight_core.io.identity import check_latents_from_model

# train-vae's run id is hex text: read as text, so "0012..." keeps its zeros
_DTYPES = {"model_run": str}


@dataclass(frozen=True)
class LatentTable:
    """Latent points of a half set's particles.

    Attributes
    ----------
    rows
        `(M,)` STAR rows of the half set's particles, sorted.
    latents
        `(M, L)` refined latent means (``mu_*``) of those rows.
    validation
        `(M,)` True for the particles held out of training.
    model_run, half
        The training run and half set that wrote the table (``None`` when not recorded).
    """

    rows: np.ndarray
    latents: torch.Tensor
    validation: np.ndarray
    model_run: str | None = None
    half: int | None = None

    def by_row(self, n_rows: int) -> torch.Tensor:
        """`(n_rows, L)` latents indexed by STAR row (zero for rows of the other half)."""
        table = self.latents.new_zeros(n_rows, self.latents.shape[1])
        table[torch.from_numpy(np.array(self.rows))] = self.latents
        return table

    def shuffled(self, seed: int) -> LatentTable:
        """The same rows, each with the latent of a random other particle of the table.

        The null control: a derangement (no particle keeps its own latent) drawn with
        ``seed``, so the motions stay those the half set found but are decoupled from the
        images they were found in.
        """
        order = derangement(len(self.rows), seed)
        shuffled = self.latents[torch.from_numpy(order)]
        return LatentTable(self.rows, shuffled, self.validation, self.model_run, self.half)


def derangement(n: int, seed: int) -> np.ndarray:
    """`(n,)` a random permutation of ``0..n-1`` without fixed points (n >= 2).

    A random permutation whose fixed points swap values with their next neighbour (a swap
    never makes a new fixed point): close enough to uniform for a control, deterministic for
    ``seed``.
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    for index in range(n):
        if order[index] == index:
            other = (index + 1) % n
            order[index], order[other] = order[other], order[index]
    return order


def mean_columns(table: pd.DataFrame) -> list[str]:
    """The latent-mean columns ``mu_0, mu_1, ...`` of a latent table, in order."""
    means = (c for c in table.columns if str(c).startswith("mu_"))
    return sorted(means, key=lambda c: int(str(c).split("_")[1]))


def read_latent_table(path: str | Path, expected_rows: np.ndarray) -> LatentTable:
    """Read ``path`` and check that it holds exactly ``expected_rows`` (the half set).

    Raises
    ------
    InputError
        Naming the file and the column or rows that do not match.
    """
    table = pd.read_csv(path, dtype=_DTYPES)
    columns = mean_columns(table)
    for needed, present in (("row", "row" in table), ("mu_0", bool(columns))):
        if not present:
            raise InputError(path, needed, "a column of train-vae's latent table", "absent")
    table = table.sort_values("row")
    rows = table["row"].to_numpy(dtype=np.int64)
    expected = np.sort(np.asarray(expected_rows, dtype=np.int64))
    if len(rows) != len(expected) or not np.array_equal(rows, expected):
        missing = np.setdiff1d(expected, rows)
        extra = np.setdiff1d(rows, expected)
        raise InputError(
            path,
            "row",
            f"the {len(expected)} particles of the half set",
            f"{len(rows)} rows ({len(missing)} of the half set missing, {len(extra)} others)",
            "Was it written by train-vae for this half set and this STAR file?",
        )
    values = torch.as_tensor(table[columns].to_numpy(dtype=np.float32))
    if not bool(torch.isfinite(values).all()):
        raise InputError(path, "mu_*", "finite latent values", "NaN or infinite values")
    validation = (
        table["validation"].to_numpy().astype(bool)
        if "validation" in table
        else np.zeros(len(rows), bool)
    )
    return LatentTable(rows, values, validation, *latent_origin(path, table))


def latent_origin(path: str | Path, table: pd.DataFrame) -> tuple[str | None, int | None]:
    """The training run (``model_run``) and half set (``half``) a latent table records.

    ``None`` for a column the table does not have (a table from before run ids, or made by
    the user).

    Raises
    ------
    InputError
        When a column holds more than one value (tables of different runs put together).
    """
    found: list[Any] = []
    for column in ("model_run", "half"):
        if column not in table:
            found.append(None)
            continue
        values = table[column].astype(str).unique()
        if len(values) != 1:
            raise InputError(
                path, column, "one value (the table of one training run)", f"{len(values)} values"
            )
        found.append(values[0])
    run, half = found
    return run, None if half is None else int(half)


def check_latents_match_model(
    path: str | Path, table: pd.DataFrame | LatentTable, model_path: str | Path, vae: Any
) -> None:
    """Fail unless the latent table at ``path`` was written with the half-set VAE ``vae``.

    ``vae`` is a :class:`~dynamight_core.training.half_set_vae.HalfSetVae` (its ``run`` and
    ``half``), read from ``model_path``.
    """
    if isinstance(table, LatentTable):
        run, half = table.model_run, table.half
    else:
        run, half = latent_origin(path, table)
    check_latents_from_model(path, run, half, model_path, vae.run, vae.half)


def read_latent_means(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A train-vae latent table and its `(P, L)` latent means (float64).

    Raises
    ------
    InputError
        When the file is unreadable, has fewer than 3 particles, no ``row`` or ``mu_*``
        columns, or latents that are not finite.
    """
    try:
        table = pd.read_csv(path, dtype=_DTYPES)
    except (OSError, ValueError) as err:
        raise InputError(path, "file", "train-vae's latent table (CSV)", str(err)) from None
    columns = mean_columns(table)
    if len(table) < 3 or not columns or "row" not in table:
        raise InputError(
            path, "row, mu_*", "rows and latent means of at least 3 particles", "fewer or none"
        )
    latents = table[columns].to_numpy(dtype=np.float64)
    if not np.isfinite(latents).all():
        raise InputError(path, "mu_*", "finite latent means", "NaN or infinite values")
    return table, latents


def check_rows_match_star(
    path: str | Path, table: pd.DataFrame, image_names: np.ndarray, star: str | Path
) -> None:
    """Fail unless a latent table's ``row`` (and ``rlnImageName``) fit the STAR file's particles.

    ``image_names`` `(N,)` are the STAR file's ``rlnImageName``, in file order: each row
    must appear once, lie in ``0..N-1`` and, when the table has image names, name the same
    image as the STAR file's row.
    """
    rows = table["row"].to_numpy(dtype=np.int64)
    if len(np.unique(rows)) != len(rows):
        raise InputError(path, "row", "each particle once", "repeated rows")
    if rows.min() < 0 or rows.max() >= len(image_names):
        raise InputError(path, "row", f"rows of {star} (0..{len(image_names) - 1})", "others")
    if "rlnImageName" in table and not np.array_equal(
        table["rlnImageName"].astype(str).to_numpy(), image_names[rows]
    ):
        raise InputError(
            path,
            "rlnImageName",
            f"the images of those rows in {star}",
            "other images",
            "Were these latents trained on this STAR file?",
        )
