"""Pictures of runs: `curves.png` in a run's folder, and several runs (seeds) on one figure.

TensorBoard answers "how is this run doing" only while a server runs and a browser is open; a
PNG beside the checkpoints survives being copied off a cluster, and `palaestra plot` puts seeds
on one figure as mean and spread, which TensorBoard does not draw.

matplotlib is imported inside the functions (it costs about half a second) and only through
`Figure` with an Agg canvas: no pyplot, so a user's own backend and open figures stay as they
were, and nothing needs a display.
"""
from __future__ import annotations

import difflib
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from palaestra.atomic import atomic_write
from palaestra.event_reader import EVENT_PREFIX, Series, behavior_dirs, read_scalars
from palaestra.exception import PalaestraError
from palaestra.paths import safe_component

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["read_scalars", "behavior_dirs", "write_run_curves", "plot_runs", "mean_and_spread",
           "resolve_run", "main"]

REWARD = "Environment/Cumulative Reward"
GROUP_REWARD = "Environment/Group Cumulative Reward"
LENGTH = "Environment/Episode Length"
LOSSES = "Losses/"
PANEL_INCHES = (4.2, 2.6)
RUN_COLUMNS = 4  # behaviors side by side in curves.png before wrapping to a new block
PLOT_COLUMNS = 3  # behavior panels side by side in `palaestra plot`
MARKERS_UP_TO = 30  # points; fewer are drawn with dots, so a two-summary run shows something

Floats = npt.NDArray[np.float64]
Scalars = Dict[str, Series]


# ------------------------------------------------------------------ figures and files

def _figure(rows: int, cols: int) -> Tuple["Figure", Any]:
    """A figure with an Agg canvas and a (rows, cols) array of axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(cols * PANEL_INCHES[0], rows * PANEL_INCHES[1]), dpi=100,
                 layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _image_format(path: str, what: str) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fmt = os.path.splitext(path)[1][1:].lower() or "png"
    supported = FigureCanvasAgg.get_supported_filetypes()
    if fmt not in supported:
        raise PalaestraError(f"{what} {path}: cannot write .{fmt} images; use one of "
                             f"{', '.join('.' + f for f in sorted(supported))}.")
    return fmt


def _save(fig: "Figure", path: str, fmt: str) -> None:
    """Written beside its final name and moved into place: a viewer that reloads the file
    while a run rewrites it never sees half an image."""
    atomic_write(path, lambda fh: fig.savefig(fh, format=fmt))


def _draw(ax: "Axes", steps: npt.NDArray[np.int64], values: Floats, label: str) -> None:
    """One curve; NaN and infinite points are gaps, marked by red crosses at the bottom."""
    finite = np.isfinite(values)
    marker = "o" if len(steps) <= MARKERS_UP_TO else None
    ax.plot(steps, np.where(finite, values, np.nan), marker=marker, markersize=3, label=label)
    if not finite.all():
        ax.plot(steps[~finite], np.full(int((~finite).sum()), 0.02), "x", color="red",
                transform=ax.get_xaxis_transform(), label=f"{label}: not finite")


def _short(tag: str) -> str:
    return tag.rsplit("/", 1)[-1]


# ------------------------------------------------------------------ curves.png of one run

def _panels(scalars: Dict[str, Scalars]) -> List[List[str]]:
    """The rows of curves.png, each the tags drawn together in one panel: reward (with the
    group reward of multi-agent trainers beside it, same units), episode length, then one
    panel per loss (their scales differ by orders of magnitude). Rows no behavior has are
    left out."""
    tags = set().union(*(s.keys() for s in scalars.values()))
    rows = [[t for t in (REWARD, GROUP_REWARD) if t in tags], [LENGTH] if LENGTH in tags else []]
    rows += [[t] for t in sorted(t for t in tags if t.startswith(LOSSES))]
    return [row for row in rows if row]


def _draw_panel(ax: "Axes", series: Scalars, row: List[str], title: str,
                xlabel: bool, share: Optional["Axes"]) -> bool:
    """Draw one panel; whether it had anything to draw. Panels of one behavior share their
    steps axis (`share`), so a loss summarised once is placed on the run's timeline."""
    present = [t for t in row if t in series]
    ax.set_title(title, fontsize=10)
    if not present:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", color="gray",
                transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return False
    if share is not None:
        ax.sharex(share)
    for tag in present:
        _draw(ax, *series[tag], label=_short(tag))
    if len(present) > 1 or not np.isfinite(series[present[0]][1]).all():
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if xlabel:
        ax.set_xlabel("steps")
    return True


def write_run_curves(run_dir: str, out_name: str = "curves.png") -> Optional[str]:
    """Draw a run's reward, episode length and losses into `<run_dir>/<out_name>`.

    One column per behavior (in blocks of RUN_COLUMNS side by side), one row per stat. Returns
    the file's path, or None when there is nothing to draw yet (no event files, or none of
    these stats): then nothing is written and an older picture stays. `out_name` must be a
    plain file name, so the picture always lands inside the run's folder.
    """
    path = os.path.join(run_dir, safe_component(out_name, "curves file name"))
    fmt = _image_format(path, "curves file")
    scalars = {b: read_scalars(d) for b, d in behavior_dirs(run_dir).items()}
    rows = _panels(scalars)
    if not rows:
        return None
    behaviors = list(scalars)
    cols = min(len(behaviors), RUN_COLUMNS)
    blocks = -(-len(behaviors) // cols)
    fig, axes = _figure(blocks * len(rows), cols)
    for i, behavior in enumerate(behaviors):
        block, col = divmod(i, cols)
        share: Optional["Axes"] = None
        for r, row in enumerate(rows):
            ax = axes[block * len(rows) + r, col]
            title = _short(row[0]) if r else f"{behavior}\n{_short(row[0])}"
            if _draw_panel(ax, scalars[behavior], row, title, r == len(rows) - 1, share):
                share = share or ax
    for i in range(len(behaviors), blocks * cols):  # the last block's empty places
        block, col = divmod(i, cols)
        for r in range(len(rows)):
            axes[block * len(rows) + r, col].set_visible(False)
    fig.suptitle(os.path.basename(os.path.normpath(run_dir)))
    _save(fig, path, fmt)
    return path


# ------------------------------------------------------------------ several runs

def _last_per_step(steps: npt.NDArray[np.int64], values: Floats
                   ) -> Tuple[npt.NDArray[np.int64], Floats]:
    """One value per step (the last written) for np.interp, which needs increasing steps."""
    last = np.append(steps[1:] != steps[:-1], True)
    return steps[last], values[last]


def mean_and_spread(curves: Sequence[Series]) -> Tuple[npt.NDArray[np.int64], Floats, Floats,
                                                        Floats]:
    """(steps, mean, mean - std, mean + std) of several runs' curves of one stat.

    Runs summarise at their own steps (a different summary_freq, a resume), so each curve is
    linearly interpolated onto the steps any of them has within the range all of them cover:
    past the shortest run's end the mean would silently lose members. std is the population
    standard deviation across runs (ddof=0); one curve gives a zero spread. NaN and infinite
    values count as missing: they make the mean a gap there rather than a number.
    Raises ValueError when a curve is empty or the ranges do not overlap.
    """
    if not curves or any(len(s) == 0 for s, _ in curves):
        raise ValueError("mean_and_spread needs at least one curve, each with points")
    first = max(int(s[0]) for s, _ in curves)
    last = min(int(s[-1]) for s, _ in curves)
    if first > last:
        raise ValueError(f"the curves' steps do not overlap (latest start {first}, earliest "
                         f"end {last})")
    grid = np.unique(np.concatenate([s for s, _ in curves]))
    grid = grid[(grid >= first) & (grid <= last)]
    ys = np.stack([np.interp(grid, *_last_per_step(s, np.where(np.isfinite(v), v, np.nan)))
                   for s, v in curves])
    mean = ys.mean(axis=0)
    std = ys.std(axis=0)
    return grid, mean, mean - std, mean + std


def _listing(names: Sequence[str], near: str) -> str:
    """`names` with the ones closest to `near` (a misspelling) first."""
    close = difflib.get_close_matches(near, names, n=5, cutoff=0.5)
    return ", ".join(close + sorted(n for n in names if n not in close))


def _run_scalars(run_dir: str) -> Dict[str, Scalars]:
    dirs = behavior_dirs(run_dir)
    if not dirs:
        raise PalaestraError(f"run {run_dir}: no TensorBoard event files ({EVENT_PREFIX}*) in "
                             "its behavior folders; has it written its first summary yet?")
    return {b: read_scalars(d) for b, d in dirs.items()}


def _chosen_behaviors(runs: Dict[str, Dict[str, Scalars]], behavior: Optional[str]
                      ) -> List[str]:
    if behavior is not None:
        for run, scalars in runs.items():
            if behavior not in scalars:
                raise PalaestraError(f"--behavior {behavior!r}: run {run} has no such behavior;"
                                     f" it has: {_listing(list(scalars), behavior)}.")
        return [behavior]
    first = next(iter(runs.values()))
    shared = [b for b in first if all(b in s for s in runs.values())]
    if not shared:
        have = "; ".join(f"{run}: {', '.join(s)}" for run, s in runs.items())
        raise PalaestraError(f"these runs share no behavior ({have}); plot runs of one "
                             "environment, or name one with --behavior.")
    return shared


def _with_stat(runs: Dict[str, Dict[str, Scalars]], behaviors: List[str], stat: str
               ) -> List[str]:
    """The behaviors every run recorded `stat` for; an error listing what they did record
    when there are none."""
    kept = [b for b in behaviors if all(stat in s[b] for s in runs.values())]
    if kept:
        return kept
    stats = sorted({t for s in runs.values() for b in behaviors for t in s[b]})
    lacking = [f"{run} ({', '.join(b for b in behaviors if stat not in s[b])})"
               for run, s in runs.items() if any(stat not in s[b] for b in behaviors)]
    raise PalaestraError(f"--stat {stat!r} is not recorded in {'; '.join(lacking[:5])}"
                         f"{' and others' if len(lacking) > 5 else ''}. Stats these runs have: "
                         f"{_listing(stats, stat)}.")


def _groups(run_dirs: Sequence[str], labels: Optional[Sequence[str]]) -> Dict[str, List[str]]:
    """label -> its runs, in the order given. Without labels all runs are one group named
    after the start their folder names share, as a pattern ("ppo_s1", "ppo_s2" -> "ppo_s*")."""
    if labels is None:
        names = [os.path.basename(os.path.normpath(d)) for d in run_dirs]
        common = os.path.commonprefix(names)
        label = names[0] if len(names) == 1 else f"{common}*" if common else f"{len(names)} runs"
        return {label: list(run_dirs)}
    if len(labels) != len(run_dirs):
        raise ValueError(f"plot_runs: {len(labels)} labels for {len(run_dirs)} runs")
    groups: Dict[str, List[str]] = {}
    for label, run in zip(labels, run_dirs):
        groups.setdefault(label, []).append(run)
    return groups


def _draw_groups(ax: "Axes", runs: Dict[str, Dict[str, Scalars]],
                 groups: Dict[str, List[str]], behavior: str, stat: str) -> None:
    for label, members in groups.items():
        try:
            steps, mean, low, high = mean_and_spread([runs[r][behavior][stat] for r in members])
        except ValueError as exc:
            raise PalaestraError(f"{label} ({', '.join(members)}), {behavior}, {stat}: {exc}; "
                                 "plot runs that cover a common range of steps.") from None
        if len(members) == 1:
            _draw(ax, steps, mean, label)
            continue
        (line,) = ax.plot(steps, mean, label=f"{label}: mean ± std of {len(members)} runs")
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.25, linewidth=0)


def plot_runs(run_dirs: Sequence[str], stat: str = REWARD, out: str = "plot.png",
              behavior: Optional[str] = None, title: Optional[str] = None,
              labels: Optional[Sequence[str]] = None) -> str:
    """Draw `stat` of several runs into the image `out` (its extension picks the format) and
    return its path.

    Runs with the same label (`labels`, one per run) form a group drawn as its mean line with
    a shaded band of mean ± one standard deviation across the group's runs (`mean_and_spread`:
    on common steps, over the range all of them cover); a group of one run is just its line.
    Without labels all runs are one group. `behavior=None` gives each behavior every run has
    a panel of its own.
    """
    if not run_dirs:
        raise PalaestraError("no runs to plot: name at least one run id or run folder.")
    fmt = _image_format(out, "-o")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise PalaestraError(f"-o {out}: the folder {folder} does not exist.")
    runs = {run: _run_scalars(run) for run in run_dirs}
    behaviors = _with_stat(runs, _chosen_behaviors(runs, behavior), stat)
    groups = _groups(run_dirs, labels)
    cols = min(len(behaviors), PLOT_COLUMNS)
    fig, axes = _figure(-(-len(behaviors) // cols), cols)
    for ax, name in zip(axes.flat, behaviors):
        _draw_groups(ax, runs, groups, name, stat)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("steps")
        ax.set_ylabel(_short(stat))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes.flat[len(behaviors):]:
        ax.set_visible(False)
    fig.suptitle(title if title is not None else stat)
    _save(fig, out, fmt)
    return out


def resolve_run(name: str, results_dir: str = "results") -> str:
    """The folder of a run given as a run id (a folder of `results_dir`) or as a folder path;
    the run id wins when both exist, as `palaestra learn --run-id` names it."""
    by_id = os.path.join(results_dir, name)
    tried = [by_id] if os.path.normpath(by_id) == os.path.normpath(name) else [by_id, name]
    for path in tried:
        if os.path.isdir(path):
            return path
    folders = f"folder{'s' if len(tried) > 1 else ''} {' and '.join(tried)}"
    raise PalaestraError(f"run {name!r}: no such run; tried the {folders}. Give a run id under "
                         f"--results-dir ({results_dir}) or the path of a run's folder.")


def main(runs: Sequence[str], stat: str = REWARD, out: str = "plot.png",
         results_dir: str = "results", behavior: Optional[str] = None) -> str:
    """`palaestra plot RUN...`: all runs as one group (seeds of one configuration)."""
    return plot_runs([resolve_run(r, results_dir) for r in runs], stat=stat, out=out,
                     behavior=behavior)
