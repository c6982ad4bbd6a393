"""The national synthetic set (shequ bench, up to 600,000 communities) names its files <district code>_<quarter>:
no district code may read as another period beside the quarter. Province prefixes 19 and 20 made 190102 read as
1901-02 and 200102 as 2001-02, and 64 of the 3,000 files of the first 600,000 set were quarantined whole as
conflicting_period."""

from shequ.periods import classify_period
from shequ.sample import synthetic_registry


def test_every_district_code_leaves_the_file_name_one_quarter():
    reg = synthetic_registry(600_000)
    assert reg["community_code"].n_unique() == reg.height == 600_000
    codes = reg["district_code"].unique().to_list()
    assert len(codes) == 3_000
    assert not [c for c in codes if classify_period(f"{c}_2024Q1") != ("2024Q1", None)]
    assert not {c[:2] for c in codes} & {"19", "20"}
