"""The project's fuzz suite at CI size (issue 13, item 2): 170 mutants of the bundled sample inbox's 2024Q4 files
(10 of each mutation class), loaded three at a time beside the unmutated files of the other districts through the
real ingest path and the fact build, each compared against the unmutated facts by shequ/fuzz.py's oracle.

No mutant may end silently wrong (a value that lands as neither the unmutated value nor what its mutated cell
really holds), as internal_error, or crash the load; the unmutated neighbours' facts never change.
About 3 minutes on a loaded 2-core machine (204 mutants took 221 s at load 12 beside a 2,000-file run; 170 are
timed in docs/fuzzing.md); `shequ fuzz --files 2000` is the big run.
"""

import pytest

from shequ import fuzz

N, SEED = 10 * len(fuzz.MUTATIONS), 13

# Mutation classes that fail because of a known, not yet fixed bug (keyed by class, so every other class stays
# guarded). Empty: the classes that failed before the numeric-bounds work (line_separator, json_literal,
# huge_number, long_string) pass since it was merged.
KNOWN_ON_MAIN: dict[str, str] = {}


@pytest.fixture(scope="module")
def report():
    return fuzz.run(N, SEED, batch_size=3)


def _failures(report, mutation):
    return [f"{r['class']}: {r['file']} | {r['detail'][:80]} | {r.get('cell', '')} | 应为 {r.get('expected')} | "
            f"实得 {str(r.get('got'))[:160]}" for r in report["failures"] if r["mutation"] == mutation]


@pytest.mark.parametrize("mutation", [
    pytest.param(m, marks=pytest.mark.xfail(strict=False, reason=KNOWN_ON_MAIN[m])) if m in KNOWN_ON_MAIN else m
    for m in fuzz.MUTATIONS])
def test_no_mutant_silently_wrong_internal_error_or_crash(report, mutation):
    # the classes are sums of their outcomes; hostile labels and headers holding a separator count as line_separator
    assert sum(report["by_mutation"].get(mutation, {}).values()) > 0, f"{mutation} 未被执行"
    assert not _failures(report, mutation), "\n".join(_failures(report, mutation))


def test_every_mutant_classified_and_most_reach_the_warehouse(report):
    assert sum(report["counts"].values()) == N
    assert set(report["counts"]) == set(fuzz.CLASSES)
    # the suite exercises the value paths, not only file rejections
    assert report["counts"]["exact"] + report["counts"]["quarantined"] > N // 2
    assert report["counts"]["rejected"] > 0     # byte flips and truncations do reach the rejection paths


def test_unmutated_neighbours_keep_their_facts(report):
    assert report["bystander_changes"] == []


def test_fuzz_is_deterministic_for_a_seed():
    """Same seed, same mutants (bytes and oracle): a failure found in CI can be replayed with `shequ fuzz`."""
    import tempfile
    from pathlib import Path

    loader = fuzz.Loader(Path(tempfile.mkdtemp(prefix="fuzz_det_")), "2024Q4")
    try:
        sources = fuzz.load_sources(fuzz.SAMPLE_INBOX, "2024Q4", loader)
    finally:
        loader.close()
    a = fuzz.make_mutants(sources, 40, SEED)
    b = fuzz.make_mutants(sources, 40, SEED)
    assert [(m.name, m.file_id, m.mutation, m.detail) for m in a] == [(m.name, m.file_id, m.mutation, m.detail)
                                                                      for m in b]
    assert len({m.file_id for m in a}) > 30
