"""Action ``explore select``: particles of a latent-space region as a RELION STAR subset.

The region is one of: a box or a polygon on the PC1/PC2 scores (``--coordinates latent``:
on the latent coordinates themselves), a score range (``--pc-range``) or percentile range
(``--pc-percentiles``) of one principal component, or k-means cluster labels
(``--clusters K:labels``, numbered as ``explore maps --clusters`` numbers them). Each half
set's latent table is a latent space of its own (two independent models), whose PC1 sign
is arbitrary: with both tables, ``--alignment`` (align-halves' ``latent/alignment.json``)
orients half set 2's PC1 as half set 1's, so that a region on PC1 names one end of the
motion in both halves; the region is then applied to each half in its own PCA, half 2's
PC1 scores multiplied by the alignment's sign. Both tables without an alignment, an
alignment of other tables or one whose halves do not agree on the motion, and criteria that
only PC1's orientation cannot make comparable (other components, latent coordinates) are
refused. The complement is the particles
with a latent outside the region: particles without a latent (of a half whose table was
not given) are in neither file. A region that holds no particle stops with exit code 2; one
that holds every particle is written with a warning. The subset and the complement are the
input STAR file's own text, rows left out (every column, the optics table, number
formatting and row order as RELION wrote them), ready for RELION's Import or any job that
takes particles.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from dynamight_core.config_cli import add_file_argument, add_run_argument

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

logger = logging.getLogger(__name__)

HELP = "choose particles by a latent-space region and write RELION STAR subsets"

CRITERIA = ("box", "polygon", "pc_range", "pc_percentiles", "clusters")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``explore select``."""
    add_file_argument(
        parser, "--latents", "latent table(s) of one or both half sets (train-vae)", nargs="+"
    )
    add_file_argument(parser, "--star", "the particle STAR file the latents were trained on")
    add_file_argument(parser, "--out-selected", "STAR file of the selected particles")
    add_file_argument(parser, "--out-complement", "STAR file of all the other particles")
    add_file_argument(
        parser, "--out-csv", "per particle: row, image, half, PC scores, selected", default=None
    )
    add_run_argument(
        parser, "--box", "box 'low1,low2,...:high1,high2,...' on the coordinates", default=None
    )
    add_run_argument(
        parser,
        "--polygon",
        "polygon 'x1,y1;x2,y2;x3,y3;...' on the first two coordinates",
        default=None,
    )
    add_run_argument(
        parser,
        "--pc-range",
        "'C:LOW:HIGH': scores of principal component C in [LOW, HIGH]",
        default=None,
    )
    add_run_argument(
        parser,
        "--pc-percentiles",
        "'C:LOW:HIGH': particles between these percentiles (0-100) of component C's scores",
        default=None,
    )
    add_run_argument(
        parser,
        "--clusters",
        "'K:L1,L2,...': k-means with K clusters, keep labels L1, L2, ...",
        default=None,
    )
    add_file_argument(
        parser,
        "--alignment",
        "align-halves' record (results/latent/alignment.json): needed with both half sets' "
        "tables, it orients half set 2's PC1 as half set 1's",
        default=None,
    )
    add_run_argument(
        parser,
        "--coordinates",
        "coordinates of --box and --polygon: pc (principal-component scores) or latent",
        choices=("pc", "latent"),
        default="pc",
    )


def run(args: argparse.Namespace) -> None:
    """Apply the region to each half set's latents and write the two STAR files."""
    import numpy as np
    import pandas as pd

    from dynamight_core.errors import InputError
    from dynamight_core.io.files import atomic_path, write_json_atomic
    from dynamight_core.io.star import particle_image_names
    from dynamight_core.io.star_subset import write_star_split

    given = [name for name in CRITERIA if getattr(args, name)]
    if len(given) != 1:
        flags = ", ".join("--" + name.replace("_", "-") for name in CRITERIA)
        raise InputError("explore select", "region", f"exactly one of {flags}", str(given))
    criterion = given[0]
    signs = _pc1_signs(args, criterion)
    image_names = particle_image_names(args.star)
    keep = np.zeros(len(image_names), dtype=bool)
    has_latent = np.zeros(len(image_names), dtype=bool)
    tables = []
    seen: set[int] = set()
    for path, sign in zip(args.latents, signs, strict=True):
        table, chosen, scores = _select_half(args, criterion, path, image_names, sign)
        rows = table["row"].to_numpy(dtype=np.int64)
        overlap = seen.intersection(rows.tolist())
        if overlap:
            raise InputError(path, "row", "particles of another half set", "rows seen twice")
        seen.update(rows.tolist())
        keep[rows[chosen]] = True
        has_latent[rows] = True
        frame = pd.DataFrame({"row": rows, "rlnImageName": image_names[rows], "latents": path})
        for k in range(min(2, scores.shape[1])):
            frame[f"pc{k + 1}"] = scores[:, k]
        frame["selected"] = chosen
        tables.append(frame)
        logger.info("%s: %d of %d particles in the region", path, chosen.sum(), len(chosen))
    _check_selection(args, criterion, keep, has_latent)
    selected, complement = write_star_split(
        args.star, keep, args.out_selected, args.out_complement, has_latent & ~keep
    )
    logger.info(
        "wrote %d particles to %s and %d to %s",
        selected,
        args.out_selected,
        complement,
        args.out_complement,
    )
    if args.out_csv:
        with atomic_path(args.out_csv) as tmp:
            pd.concat(tables).sort_values("row").to_csv(tmp, index=False, float_format="%.6g")
        write_json_atomic(
            f"{args.out_csv}.json",
            {
                "criterion": criterion,
                "value": getattr(args, criterion),
                "selected": selected,
                "complement": complement,
                "latents": list(args.latents),
                "alignment": args.alignment,
                "pc1_signs": signs,
                "star": args.star,
            },
        )


def _check_selection(
    args: argparse.Namespace, criterion: str, keep: np.ndarray, has_latent: np.ndarray
) -> None:
    """Stop on an empty region; warn when it holds every particle or some have no latent."""
    from dynamight_core.errors import InputError

    flag = "--" + criterion.replace("_", "-")
    if not keep.any():
        raise InputError(
            flag,
            criterion,
            "a region holding at least one particle",
            f"none of the {int(has_latent.sum())} particles with a latent",
            "Widen the region (see the PC scores in latent-space's figure, or --out-csv)",
        )
    if keep[has_latent].all():
        logger.warning(
            "%s %s holds every particle with a latent: the complement is empty",
            flag,
            getattr(args, criterion),
        )
    missing = int((~has_latent).sum())
    if missing:
        logger.warning(
            "%d particles of %s have no latent in the given tables (another half set?): "
            "they are in neither output file",
            missing,
            args.star,
        )


def _pc1_signs(args: argparse.Namespace, criterion: str) -> list[int]:
    """Each table's PC1 sign: 1, and with two tables half 2's sign from ``--alignment``.

    Raises
    ------
    InputError
        Two tables without an alignment, an alignment of other tables or without
        agreement, or a criterion on what the alignment does not orient.
    """
    from dynamight_core.errors import InputError

    if len(args.latents) == 1:
        return [1]
    if len(args.latents) != 2:
        raise InputError("--latents", "files", "one or both half sets' tables", "more")
    if not args.alignment:
        raise InputError(
            "--alignment",
            "file",
            "align-halves' record with both half sets' tables",
            "none given",
            "Each half set's PC1 has its own sign: without the alignment a region on PC1 "
            "takes one end of the motion in one half and the other end in the other. Give "
            "--alignment results/latent/alignment.json",
        )
    if not _on_pc1(args, criterion):
        raise InputError(
            f"--{criterion.replace('_', '-')}",
            criterion,
            "a region on PC1 (--pc-range/--pc-percentiles 1:..., or --box/--polygon on PC "
            "scores) with both half sets",
            str(getattr(args, criterion)),
            "Only PC1 is oriented alike in both half sets (align-halves): select other "
            "components, clusters or latent coordinates in each half set on its own",
        )
    return [1, _alignment_sign(args.alignment, args.latents)]


def _on_pc1(args: argparse.Namespace, criterion: str) -> bool:
    """Whether the region is one the aligned PC1 makes comparable across half sets.

    A range of PC1, or a box or polygon on PC scores (PC1 aligned; PC2, if used, keeps each
    half's sign: a box symmetric in PC2 is safe, the log says so).
    """
    if criterion in ("pc_range", "pc_percentiles"):
        return str(getattr(args, criterion)).split(":")[0].strip() == "1"
    if criterion in ("box", "polygon") and args.coordinates == "pc":
        logger.warning(
            "with both half sets only PC1 is oriented alike: the region's other coordinates "
            "(PC2, ...) keep each half set's own sign"
        )
        return True
    return False


def _alignment_sign(path: str, latents: list[str]) -> int:
    """Half 2's PC1 sign from align-halves' record, after checking it is of these tables."""
    from dynamight_core.data.latent_alignment import MIN_AGREEMENT, read_alignment
    from dynamight_core.errors import InputError
    from dynamight_core.io.files import sha256_file

    record = read_alignment(path)
    hashes = [sha256_file(table) for table in latents]
    if record.get("latents_sha256") != hashes:
        raise InputError(
            path,
            "latents_sha256",
            f"the alignment of {latents[0]} (half set 1) and {latents[1]} (half set 2)",
            "the alignment of other tables (or of these in the other order)",
            "Give the tables as half set 1, half set 2, with that run's alignment.json",
        )
    if not record.get("aligned"):
        raise InputError(
            path,
            "correlation",
            f"half sets that agree on the motion along PC1 (agreement >= {MIN_AGREEMENT})",
            f"agreement {record.get('correlation')}",
            "The halves' PC1 are not one motion: select in each half set on its own",
        )
    sign = int(record["sign"])
    logger.info(
        "half set 2's PC1 %s half set 1's (agreement %.2f, %s)",
        "follows" if sign > 0 else "is reversed against",
        record["correlation"],
        path,
    )
    return sign


def _select_half(
    args: argparse.Namespace,
    criterion: str,
    path: str,
    image_names: np.ndarray,
    sign: int = 1,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The half set's table, `(P,)` selection mask and `(P, L)` PC scores.

    ``sign`` multiplies the PC1 scores (half set 2's orientation from the alignment).
    """
    import numpy as np

    from dynamight_core.data.latent_space import latent_clusters, latent_pca
    from dynamight_core.data.latents import check_rows_match_star, read_latent_means
    from dynamight_core.data.selection import in_box, in_labels, in_polygon, in_range
    from dynamight_core.errors import InputError

    table, latents = read_latent_means(path)
    check_rows_match_star(path, table, image_names, args.star)
    pca = latent_pca(latents)
    scores = pca.scores.copy()
    scores[:, 0] *= sign
    coordinates = scores if args.coordinates == "pc" else latents
    text = getattr(args, criterion)
    try:
        if criterion == "box":
            low, _, high = text.partition(":")
            chosen = in_box(coordinates, _numbers(low), _numbers(high))
        elif criterion == "polygon":
            from dynamight_core.data.selection import parse_vertices

            chosen = in_polygon(coordinates[:, :2], parse_vertices(text))
        elif criterion in ("pc_range", "pc_percentiles"):
            component, low, high = _component_range(text, latents.shape[1])
            values = scores[:, component]
            if criterion == "pc_percentiles":
                low, high = np.percentile(values, [low, high])
            chosen = in_range(values, low, high)
        else:
            count, _, labels = text.partition(":")
            _, found = latent_clusters(latents, int(count))
            chosen = in_labels(found, [int(v) for v in labels.split(",")])
    except ValueError as err:
        flag = "--" + criterion.replace("_", "-")
        raise InputError(flag, criterion, "a region in the documented form", str(err)) from None
    return table, np.asarray(chosen, dtype=bool), scores


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _component_range(text: str, latent_dim: int) -> tuple[int, float, float]:
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"expected 'C:LOW:HIGH', found {text!r}")
    component = int(parts[0])
    if not 1 <= component <= latent_dim:
        raise ValueError(f"component {component} of a {latent_dim}-dimensional latent space")
    return component - 1, float(parts[1]), float(parts[2])
