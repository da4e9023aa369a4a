"""Simulated sites split a folder cohort first and then load only their own records."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import aclecg_core.data.loading as loading
from aclecg_core.data.preprocess import PreprocessConfig
from aclecg_core.fed.config import load_config
from aclecg_core.fed.partition import partition_dirichlet, partition_iid
from aclecg_core.fed.pooled import pooled_cohort
from aclecg_core.fed.sites import simulated_site, simulated_site_name

ROOT = Path(__file__).resolve().parents[2]


def test_real_folders_federate_by_hospital(shared_data: Path, tmp_path: Path) -> None:
    yaml = tmp_path / "sites.yaml"
    yaml.write_text(f"cohort:\n  source: folder\n  paths: [{shared_data / 'cinc'}, "
                    f"{shared_data / 'code15'}]\n  cache-dir: {tmp_path}/cache\n"
                    f"probe:\n  source: ptbxl\n  path: {shared_data / 'ptbxl'}\n")
    cfg = load_config({"config-file": str(yaml)}, ROOT)
    hospitals = ["CODE-15%", "CPSC", "Georgia", "Ningbo", "PTB-XL", "SaMi-Trop"]
    assert cfg.cohort.sites == len(hospitals)  # sites left out: one per hospital found
    for index in (4, 5):  # the two smallest hospitals
        site = simulated_site(cfg, index, len(hospitals))
        assert {r.site for r in site.records} == {hospitals[index]}
    assert [simulated_site_name(cfg, k, len(hospitals)) for k in range(6)] == hospitals
    iid = replace(cfg, cohort=replace(cfg.cohort, partition="iid", sites=3))
    assert [simulated_site_name(iid, k, 3) for k in range(3)] == ["site1", "site2", "site3"]
    with pytest.raises(ValueError, match=r"hold 6 sites .* sites=5"):
        simulated_site(replace(cfg, cohort=replace(cfg.cohort, sites=5)), 0, 5)


@pytest.mark.parametrize("partition", ["iid", "dirichlet"])
def test_each_site_reads_only_its_share_of_a_folder(shared_data: Path, tmp_path: Path,
                                                     partition: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    yaml = tmp_path / "sites.yaml"
    yaml.write_text(f"cohort:\n  source: folder\n  path: {shared_data / 'cinc'}\n"
                    f"  layout: cinc\n  sites: 3\n  partition: {partition}\n"
                    f"  dirichlet-alpha: 0.3\n  classes: [NSR, AF, RBBB]\n"
                    f"  cache-dir: {tmp_path}/cache\n"
                    f"probe:\n  source: ptbxl\n  path: {shared_data / 'ptbxl'}\n")
    cfg = load_config({"config-file": str(yaml), "seed": 2}, ROOT)
    read: list[int] = []
    real_ingest = loading.ingest

    def counting_ingest(sources: list[Any], *args: Any, **kwargs: Any) -> Any:
        read.append(len(sources))
        return real_ingest(sources, *args, **kwargs)

    monkeypatch.setattr(loading, "ingest", counting_ingest)
    sites = [simulated_site(cfg, k, 3) for k in range(3)]

    whole = loading.load_cohort([shared_data / "cinc"], "cinc",
                                PreprocessConfig.from_dict(cfg.preprocessing), workers=1)
    assert read[:3] == [len(s.records) + len(s.rejected) for s in sites]
    assert sum(read[:3]) == len(whole.records) + len(whole.rejected)
    masks = (partition_iid(whole.records, 3, seed=2) if partition == "iid" else
             partition_dirichlet(whole.records, 3, 0.3, ["NSR", "AF", "RBBB"], seed=2))
    assert not whole.rejected  # so the split of the loaded cohort is comparable
    for site, mask in zip(sites, masks, strict=True):
        expected = {r.record_id for r, keep in zip(whole.records, mask, strict=True) if keep}
        assert {r.record_id for r in site.records} == expected

    again = simulated_site(cfg, 1, 3)  # the second time from the cache, nothing read
    assert len(read) == 4 and again.records == sites[1].records
    # the pooled reference of `aclecg compare-pooled`: exactly the sites' records and windows
    pooled = pooled_cohort(cfg)
    assert sorted(r.record_id for r in pooled.records) == sorted(
        r.record_id for site in sites for r in site.records)
    assert len(pooled) == sum(len(site) for site in sites)
