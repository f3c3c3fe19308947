"""scripts/noxsupport.py, the noxfile's helpers: the knobs make passes, and the sweep name run_cluster reads."""

from __future__ import annotations

import noxsupport
import pytest


def test_a_knob_make_exports_unset_is_empty_and_means_the_default(monkeypatch):
    monkeypatch.setenv("PROFILE", "")  # what `export PROFILE` in the Makefile gives a session when unset
    assert noxsupport.knob("PROFILE", "quick") == "quick"
    monkeypatch.delenv("PROFILE")
    assert noxsupport.knob("PROFILE", "quick") == "quick" and noxsupport.knob("PROFILE") == ""
    monkeypatch.setenv("PROFILE", "smoke")
    assert noxsupport.knob("PROFILE", "quick") == "smoke"


def test_train_args_leave_out_unset_knobs_and_split_args_as_a_shell_does(monkeypatch):
    for name in ("PROFILE", "MODEL", "RECIPE", "DEVICE"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("MODEL", "hgb")
    monkeypatch.setenv("ARGS", "--label 'two words' --seed 3")
    assert noxsupport.train_args(["--jobs", "2"]) == ["--model", "hgb", "--device", "auto", "--label", "two words",
                                                      "--seed", "3", "--jobs", "2"]


def test_sweep_name_is_read_as_toml_not_matched_as_text(tmp_path):
    spec = tmp_path / "mine.toml"
    # single quotes and a comment: valid TOML that a `name = "..."` pattern would not read
    spec.write_text("# name = \"not-this\"\nname = 'real-name'  # the folder\n[[model]]\nname = \"hgb\"\n")
    assert noxsupport.sweep_name(spec) == "real-name"
    (tmp_path / "nameless.toml").write_text('[[model]]\nname = "hgb"\n')
    assert noxsupport.sweep_name(tmp_path / "nameless.toml") == "nameless"  # as `roadrisk sweep` names it


def test_a_bad_worker_count_is_one_line_naming_the_knob(monkeypatch):
    monkeypatch.setenv("CLUSTER_WORKERS", "two")
    with pytest.raises(noxsupport.Problem, match="CLUSTER_WORKERS must be a whole number.*not 'two'"):
        noxsupport.cluster_workers()
    monkeypatch.setenv("CLUSTER_WORKERS", "")
    assert noxsupport.cluster_workers() == noxsupport.CLUSTER_WORKERS


def test_a_spec_outside_sweeps_is_refused_with_the_fix(monkeypatch, tmp_path):
    (tmp_path / "x.toml").write_text('name = "x"\n')
    monkeypatch.setenv("SPEC", str(tmp_path / "x.toml"))
    with pytest.raises(noxsupport.Problem, match="SPEC=sweeps/smoke-cpu.toml"):
        noxsupport.cluster_spec()


def test_the_variant_table_has_every_image_and_the_dockerfile_every_stage_it_names():
    variants = noxsupport.VARIANTS
    assert set(variants) == {"cpu", "mps", "gpu", "cpu-ray"}
    assert {v.torch for v in variants.values()} == {"cpu", "cuda"} and variants["gpu"].gpus and not variants["cpu"].gpus
    assert variants["cpu-ray"].extras == "ray" and variants["mps"].device == "mps"
    dockerfile = (noxsupport.ROOT / "docker" / "Dockerfile").read_text()
    for variant in variants.values():
        assert f" AS {variant.target}\n" in dockerfile, variant.target
        assert f"FROM runtime AS torch-{variant.torch}\n" in dockerfile, variant.torch
    assert "python3 -c" not in dockerfile and "python3.11/" not in dockerfile
    assert not list((noxsupport.ROOT / "docker").glob("Dockerfile.*"))  # one Dockerfile, not near-copies


def test_a_variant_row_missing_a_field_is_one_line_naming_it():
    with pytest.raises(noxsupport.Problem, match="cpu: DEVICE"):
        noxsupport.read_variants("ROADRISK_CPU_IMAGE=x\nROADRISK_CPU_TORCH=cpu\nROADRISK_CPU_TARGET=final\n"
                                 "ROADRISK_CPU_EXTRAS=\nROADRISK_CPU_LABEL=docker\nROADRISK_CPU_GPUS=\n")


def test_compose_builds_the_images_the_variant_table_names(tmp_path):
    """Compose reads docker/.env by itself: each service's tag, torch build and stage are the table's."""
    import shutil
    import subprocess

    import yaml

    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose (v1) not installed")
    done = subprocess.run(["docker-compose", "-f", "docker/docker-compose.yml", "--profile", "mps", "--profile", "gpu",
                           "config"], cwd=noxsupport.ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    for service, name in (("roadrisk", "cpu"), ("roadrisk-mps", "mps"), ("roadrisk-gpu", "gpu")):
        variant = noxsupport.VARIANTS[name]
        built = services[service]
        assert (built["image"], built["build"]["target"], built["build"]["args"]["TORCH"]) == \
            (variant.tag, variant.target, variant.torch), service
        assert built["command"][:5] == ["train", "--device", variant.device, "--label", variant.label], service
