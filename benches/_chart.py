"""The loader benchmark's chart: rows/s per workload, and seconds per epoch against rows."""

from __future__ import annotations

from pathlib import Path

GROUP_COLOURS = {
    "shuffled": "#4C72B0",
    "sequential": "#55A868",
    "beyond": "#C44E52",
    "emb": "#8172B2",
}
GROUP_LABELS = {
    "shuffled": "shuffled, 16 float32 + label",
    "sequential": "sequential, same table",
    "beyond": "disk, beyond cache budget",
    "emb": "embeddings 768 float32",
}


def write_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    results = [r for r in report["results"] if "rows_per_s" in r]
    fig, (left, right) = plt.subplots(
        1,
        2,
        figsize=(18, max(7.0, 0.36 * len(results) + 2.5)),
        gridspec_kw={"width_ratios": [1.35, 1]},
    )

    # left: rows/s per workload, log scale, top to bottom in table order
    names = [
        r["name"] + ("" if r["whole_epoch"] else f" [{r['batches_timed']} batches]")
        for r in results
    ]
    values = [r["rows_per_s"] for r in results]
    ys = list(range(len(results)))[::-1]
    colours = [GROUP_COLOURS.get(r["group"], "#777777") for r in results]
    left.barh(ys, values, color=colours, height=0.7)
    left.set_xscale("log")
    left.set_yticks(ys)
    left.set_yticklabels(names, fontsize=8.5)
    left.set_xlabel("rows per second (log scale)")
    left.set_title(
        f"one epoch, batch {report['batch_size']}, {report['cpu_count']} CPUs: "
        f"{report['rows']:,} rows x 16 float32 + label; embeddings {report['emb_rows']:,} x 768",
        fontsize=10,
    )
    left.grid(axis="x", which="major", alpha=0.3)
    top = max(values) if values else 1.0
    left.set_xlim(min(values) / 2 if values else 1.0, top * 12)
    for y, r in zip(ys, results):
        if "ratio_to_plain_python" in r:
            text = f"{r['ratio_to_plain_python']:.1f}x plain"
            if r["group"] == "beyond" and "ratio_to_group_ref" in r:
                text += f", {r['ratio_to_group_ref']:.1f}x random take"
        elif "ratio_to_group_ref" in r:
            text = f"{r['ratio_to_group_ref']:.2f}x memcpy"
        else:
            text = ""
        left.text(
            r["rows_per_s"] * 1.08, y, f"{r['rows_per_s']:,.0f}  {text}", va="center", fontsize=7.5
        )
    present = [g for g in GROUP_COLOURS if any(r["group"] == g for r in results)]
    left.legend(
        handles=[Patch(color=GROUP_COLOURS[g], label=GROUP_LABELS[g]) for g in present],
        loc="lower right",
        fontsize=8,
    )

    # right: seconds per epoch against rows, log-log
    scaling = [r for r in report.get("scaling", []) if "seconds_per_epoch" in r]
    if scaling:
        for name, marker in zip(dict.fromkeys(r["name"] for r in scaling), "os^dv"):
            pts = sorted(
                (r["rows"], r["seconds_per_epoch"], r["whole_epoch"])
                for r in scaling
                if r["name"] == name
            )
            xs = [p[0] for p in pts]
            line = right.plot(xs, [p[1] for p in pts], marker=marker, label=name)[0]
            for x, s, whole in pts:
                if not whole:  # extrapolated from a bounded number of batches: hollow marker
                    right.plot([x], [s], marker=marker, mfc="white", color=line.get_color())
            # a line of slope 1 through the smallest size: what linear growth looks like
            x0, s0 = pts[0][0], pts[0][1]
            right.plot(
                [x0, xs[-1]], [s0, s0 * xs[-1] / x0], ls=":", color=line.get_color(), alpha=0.6
            )
        right.plot([], [], ls=":", color="grey", label="linear from the smallest size")
        right.set_xscale("log")
        right.set_yscale("log")
        right.set_xlabel("rows in the table (log)")
        right.set_ylabel("seconds per shuffled epoch (log)")
        right.grid(which="both", alpha=0.3)
        right.legend(fontsize=8)
        note = "" if all(r["whole_epoch"] for r in scaling) else " (hollow: extrapolated)"
        right.set_title(
            f"cost per epoch vs rows, memory table, batch {report['batch_size']}{note}", fontsize=10
        )
    else:
        right.axis("off")
        right.text(0.5, 0.5, "scaling not run (pass --scaling)", ha="center", va="center")

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
