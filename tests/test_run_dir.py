"""The run folder: one run per folder, writable, room to work, same settings on resume."""

import collections
import json
import os

import pytest

from keras_prune import run_dir
from keras_prune.errors import OutputDirError
from keras_prune.run_dir import (
    MODEL_DIGEST, RUN_CONFIG, RUN_MARKER, check_input_outside, check_resume_config, file_digest, prepare_output_dir,
    replace_run,
)

SETTINGS = {"method": "l1", "model": "lenet5", "epochs": 10, "export": ["saved_model"], "verbose": 1}


def _hold_run(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / RUN_MARKER).write_text("--method=l1\n")
    (path / RUN_CONFIG).write_text(json.dumps(SETTINGS))


def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    _hold_run(tmp_path / "run")
    with pytest.raises(OutputDirError, match="holds another run. Pass --resume"):
        prepare_output_dir(tmp_path / "run")
    assert prepare_output_dir(tmp_path / "run", resume=True) == str(tmp_path / "run")
    (tmp_path / "run" / "model.keras").write_text("old")
    prepare_output_dir(tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "model.keras").exists(), "checking the folder deletes nothing"
    replace_run(str(tmp_path / "run"))
    assert os.listdir(tmp_path / "run") == [], "--overwrite starts from an empty folder"
    assert os.listdir(tmp_path) == ["run"], "the old run, moved aside first, is deleted"


@pytest.mark.parametrize("flags", [{}, {"overwrite": True}])
def test_a_folder_with_other_files_and_no_run_is_refused(tmp_path, flags):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="is not empty and holds no keras-prune run"):
        prepare_output_dir(tmp_path, **flags)
    replace_run(str(tmp_path))  # holds no run: nothing to replace
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert prepare_output_dir(tmp_path / "empty") == str(tmp_path / "empty"), "a new folder is fine"
    assert prepare_output_dir(tmp_path / "empty") == str(tmp_path / "empty"), "and so is an empty one"
    (tmp_path / "empty" / ".write-test").write_text("ok")  # the probe of a run killed while checking
    assert prepare_output_dir(tmp_path / "empty") == str(tmp_path / "empty")


def test_a_model_inside_the_run_folder_is_refused(tmp_path):
    with pytest.raises(OutputDirError, match="is inside --output_dir"):
        check_input_outside(tmp_path / "run", tmp_path / "run" / "sub" / "model.keras")
    check_input_outside(tmp_path / "run", tmp_path / "run2" / "model.keras")  # a sibling with a longer name
    check_input_outside(tmp_path / "run", tmp_path / "model.keras")


@pytest.mark.parametrize("name", [RUN_MARKER, RUN_CONFIG])
@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_a_folder_with_only_one_of_the_run_files_is_never_used_nor_deleted(tmp_path, name, flags):
    (tmp_path / name).write_text("someone else's")
    with pytest.raises(OutputDirError, match="not a keras-prune run folder"):
        prepare_output_dir(tmp_path, **flags)
    assert (tmp_path / name).read_text() == "someone else's"


def test_a_run_cut_off_between_its_two_first_writes_is_replaced_only_with_overwrite(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_CONFIG).write_text(json.dumps({**SETTINGS, "output_dir": str(run), "target_flops": 0.5}))
    (run / f".tmp-abc{RUN_MARKER}").write_text("--meth")  # the marker's write, cut short
    with pytest.raises(OutputDirError, match="cut off before it began; pass --overwrite"):
        prepare_output_dir(run)
    with pytest.raises(OutputDirError, match="nothing to continue. Start it again with --overwrite"):
        prepare_output_dir(run, resume=True)
    assert prepare_output_dir(run, overwrite=True) == str(run)
    replace_run(str(run))
    assert os.listdir(run) == []
    # A lone record beside other files is not taken for one: never deleted.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / RUN_CONFIG).write_text(json.dumps({**SETTINGS, "output_dir": str(mine), "target_flops": 0.5}))
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="not a keras-prune run folder"):
        prepare_output_dir(mine, overwrite=True)
    replace_run(str(mine))
    assert sorted(os.listdir(mine)) == ["notes.txt", RUN_CONFIG]


def test_resume_without_a_run_and_contradicting_flags_are_refused(tmp_path):
    with pytest.raises(OutputDirError, match="holds no run to continue"):
        prepare_output_dir(tmp_path / "empty", resume=True)
    with pytest.raises(OutputDirError, match="contradict"):
        prepare_output_dir(tmp_path / "x", resume=True, overwrite=True)


def test_an_unwritable_folder_is_refused_before_any_work(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")  # fails for root too, unlike chmod
    with pytest.raises(OutputDirError, match="is not writable: Not a directory"):
        prepare_output_dir(tmp_path / "a_file" / "run")
    with pytest.raises(OutputDirError, match="a_file is a file, not a folder"):
        prepare_output_dir(tmp_path / "a_file")


def test_a_nearly_full_disk_is_refused_before_any_work(tmp_path, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(run_dir.shutil, "disk_usage", lambda path: usage(10**12, 10**12, 10 * 2**20))
    with pytest.raises(OutputDirError, match="has 10 MiB free; a run needs at least 256 MiB"):
        prepare_output_dir(tmp_path / "run")


def test_a_new_run_records_its_settings(tmp_path):
    check_resume_config(str(tmp_path), SETTINGS, resume=False)
    assert json.loads((tmp_path / RUN_CONFIG).read_text()) == SETTINGS
    changed = {**SETTINGS, "epochs": 3}
    check_resume_config(str(tmp_path), changed, resume=False)  # --overwrite / a new run replaces the record
    assert json.loads((tmp_path / RUN_CONFIG).read_text())["epochs"] == 3


def test_resume_with_other_settings_names_each_difference(tmp_path):
    check_resume_config(str(tmp_path), SETTINGS, resume=False)
    changed = {**SETTINGS, "epochs": 20, "model": "vgg16"}
    with pytest.raises(OutputDirError, match=r"--epochs: 10 in the run, 20 now; --model: 'lenet5' in the run, 'vgg16' now"):
        check_resume_config(str(tmp_path), changed, resume=True)


def test_resume_may_change_where_and_how_it_runs(tmp_path):
    check_resume_config(str(tmp_path), SETTINGS, resume=False)
    moved = {**SETTINGS, "verbose": 0, "export": ["keras"], "resume": True, "strategy": "mirrored"}
    check_resume_config(str(tmp_path), moved, resume=True)
    assert json.loads((tmp_path / RUN_CONFIG).read_text()) == SETTINGS, "the record keeps the run's own settings"


def test_a_flag_added_after_the_run_counts_as_its_default(tmp_path):
    check_resume_config(str(tmp_path), SETTINGS, resume=False)  # a run recorded before --round_to existed
    check_resume_config(str(tmp_path), {**SETTINGS, "round_to": 1}, resume=True, defaults={"round_to": 1})
    with pytest.raises(OutputDirError, match="--round_to: 1 in the run, 8 now"):
        check_resume_config(str(tmp_path), {**SETTINGS, "round_to": 8}, resume=True, defaults={"round_to": 1})


def test_file_digest_tells_files_and_folders_apart_by_content(tmp_path):
    (tmp_path / "a").write_bytes(b"weights")
    (tmp_path / "b").write_bytes(b"weights")
    assert file_digest(str(tmp_path / "a")) == file_digest(str(tmp_path / "b"))
    (tmp_path / "b").write_bytes(b"weights2")
    assert file_digest(str(tmp_path / "a")) != file_digest(str(tmp_path / "b"))
    folder = tmp_path / "saved"
    (folder / "variables").mkdir(parents=True)
    (folder / "variables" / "v").write_bytes(b"1")
    before = file_digest(str(folder))
    (folder / "variables" / "v").write_bytes(b"2")
    assert file_digest(str(folder)) != before


def test_a_changed_model_file_is_named_as_such(tmp_path):
    check_resume_config(str(tmp_path), {**SETTINGS, MODEL_DIGEST: "aa"}, resume=False)
    with pytest.raises(OutputDirError, match="the --model file is not the one the run started from .SHA-256 aa then, bb now"):
        check_resume_config(str(tmp_path), {**SETTINGS, MODEL_DIGEST: "bb"}, resume=True)
    with pytest.raises(OutputDirError, match="the --model file the run started from is not there any more"):
        check_resume_config(str(tmp_path), SETTINGS, resume=True)  # the pipeline records no digest of a missing file
    with pytest.raises(OutputDirError, match="but --model: 'lenet5' in the run, 'vgg16' now. Resume"):  # not the file
        check_resume_config(str(tmp_path), {**SETTINGS, "model": "vgg16"}, resume=True)


@pytest.mark.parametrize("url", ["gs://bucket/runs/r50", "s3://b/r"])
def test_a_url_output_dir_is_refused_not_written_locally(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputDirError, match="is a URL.*local folder.*gcsfuse"):
        prepare_output_dir(url)
    assert os.listdir(tmp_path) == [], "no local folder named like the URL"
