"""``lerowds push`` against a loopback Hub that speaks the upload API as huggingface_hub calls it."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import yaml
from convert_helpers import SMALL_REPO, SMALL_SHARD_SIZE, run_convert
from hubserver import HubServer

from lerowds.cli import main
from lerowds.convert.card import SOURCE_RECORD, source_card_metadata
from lerowds.convert.push import push_to_hub
from lerowds.errors import ConversionError
from lerowds.format import INDEX_FILE, read_local_index

TOKEN = "hf_push_token"
SOURCE_CARD = """---
license: apache-2.0
task_categories:
- robotics
tags:
- LeRobot
- aloha
configs:
- config_name: default
  data_files: data/*/*.parquet
---
# a LeRobot dataset
"""


@pytest.fixture(scope="module")
def carded(small_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small fixture, with a dataset card, converted (read-only)."""
    src = shutil.copytree(small_root, tmp_path_factory.mktemp("carded") / "src")
    (src / "README.md").write_text(SOURCE_CARD)
    out = src.parent / "out"
    run_convert(src, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE, revision="v1.0")
    return out


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> HubServer:
    with HubServer(token=TOKEN) as server:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        yield server


def _published(out: Path) -> dict[str, bytes]:
    index, _ = read_local_index(out)
    names = [s.name for s in index.shards] + ["episodes.parquet", INDEX_FILE]
    return {n: (out / n).read_bytes() for n in names}


def _front_matter(card: bytes) -> dict:
    text = card.decode()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_push_uploads_index_last_never_state_and_a_card(carded: Path, hub: HubServer) -> None:
    assert (carded / SOURCE_RECORD).is_file()
    result = push_to_hub(carded, "me/small_lerowds", token=TOKEN, files_per_commit=2, private=True)
    assert hub.repos["me/small_lerowds"].private
    files = hub.files("me/small_lerowds")
    want = _published(carded)
    assert {k: files[k] for k in want} == want  # byte-identical
    assert set(files) == {*want, "README.md", ".gitattributes"}
    pushed = hub.commits[1:]  # after the repository's initial commit
    assert [c.oid for c in pushed] == list(result.commits)
    assert pushed[-1].added == [INDEX_FILE]  # index.json last, alone
    assert all(INDEX_FILE not in c.added for c in pushed[:-1])
    assert len(pushed) >= 4 and all(len(c.added) <= 2 for c in pushed)  # shards batched
    assert not any(p.startswith(".lerowds") for c in hub.commits for p in c.added)
    meta = _front_matter(files["README.md"])
    assert meta["source_datasets"] == [SMALL_REPO]
    assert meta["lerowds"]["source_revision"] == "v1.0"
    assert meta["lerowds"]["source_repo_id"] == SMALL_REPO
    index, _ = read_local_index(carded)
    assert meta["lerowds"]["total_episodes"] == index.total_episodes
    assert meta["lerowds"]["total_frames"] == index.total_frames
    assert meta["license"] == "apache-2.0" and {"LeRobot", "aloha", "lerowds"} <= set(meta["tags"])
    assert "configs" not in meta  # the source's data_files do not describe the shards
    body = files["README.md"].decode()
    assert 'LeRobotWebDataset("hf://datasets/me/small_lerowds"' in body
    assert all(f"`{k}`" in body for k in index.features)


def test_push_refuses_unfinished_and_corrupt_outputs(carded: Path, hub: HubServer, tmp_path: Path) -> None:
    unfinished = shutil.copytree(carded, tmp_path / "unfinished")
    (unfinished / INDEX_FILE).unlink()
    with pytest.raises(ConversionError, match=r"not a finished lerowds dataset \(no index.json\)"):
        push_to_hub(unfinished, "me/x", token=TOKEN)
    corrupt = shutil.copytree(carded, tmp_path / "corrupt")
    shard = sorted((corrupt / "shards").iterdir())[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ConversionError, match=rf"(?s)fails verification.*{shard.name}: sha256"):
        push_to_hub(corrupt, "me/x", token=TOKEN)
    assert hub.repos == {} and hub.commits == []  # nothing reached the Hub


def test_interrupted_push_resumes_and_a_repush_hides_the_old_index_first(
    carded: Path, hub: HubServer, small_root: Path, tmp_path: Path
) -> None:
    hub.fail_commit = lambda n: n == 3  # the third commit of the push fails
    with pytest.raises(ConversionError, match="rerun"):
        push_to_hub(carded, "me/resume", token=TOKEN, files_per_commit=1)
    assert len(hub.commits) == 3 and INDEX_FILE not in hub.files("me/resume")
    before = set(hub.files("me/resume"))
    hub.fail_commit = lambda n: False
    push_to_hub(carded, "me/resume", token=TOKEN, files_per_commit=1)
    again = [p for c in hub.commits[3:] for p in c.added]
    assert not set(again) & (before - {".gitattributes"})  # what was uploaded is not uploaded again
    assert {k: hub.files("me/resume")[k] for k in _published(carded)} == _published(carded)
    # a new conversion pushed over it: its first commit deletes the old index.json
    other = tmp_path / "other"
    run_convert(small_root, SMALL_REPO, other, shard_size=SMALL_SHARD_SIZE, episodes="0:3")
    n = len(hub.commits)
    push_to_hub(other, "me/resume", token=TOKEN)
    assert hub.commits[n].deleted == [INDEX_FILE]
    assert hub.files("me/resume")[INDEX_FILE] == (other / INDEX_FILE).read_bytes()


def test_push_to_a_branch(carded: Path, hub: HubServer) -> None:
    push_to_hub(carded, "me/branch", token=TOKEN, revision="lerowds-v1")
    assert INDEX_FILE not in hub.files("me/branch", "main")
    assert hub.files("me/branch", "lerowds-v1")[INDEX_FILE] == (carded / INDEX_FILE).read_bytes()


def test_pushed_dataset_reads_back_through_hf(
    carded: Path, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    from lerowds import LeRobotWebDataset

    push_to_hub(carded, "me/readback", token=TOKEN)
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    def digests(ds: LeRobotWebDataset) -> list[str]:
        out = []
        for s in ds:
            h = hashlib.sha1()
            for k in sorted(s):
                v = s[k]
                h.update(
                    k.encode() + (v.numpy().tobytes() if isinstance(v, torch.Tensor) else repr(v).encode())
                )
            out.append(h.hexdigest())
        return out

    remote = LeRobotWebDataset("hf://datasets/me/readback", seed=3, return_uint8=True, cache_dir=tmp_path)
    local = LeRobotWebDataset(carded, seed=3, return_uint8=True)
    assert digests(remote) == digests(local) and len(digests(local)) > 10
    assert any(p.startswith("shards/") for p in hub.resolves)


def test_cli_push_and_convert_push_to_hub(
    carded: Path,
    hub: HubServer,
    small_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf"))
    cli = [sys.executable, "-m", "lerowds.cli"]
    done = subprocess.run(
        [*cli, "push", str(carded), "me/cli", "--private"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert hub.repos["me/cli"].private and hub.commits[-1].added == [INDEX_FILE]
    out = tmp_path / "out"
    args = ["convert", "--repo-id", SMALL_REPO, "--root", str(small_root), "-o", str(out), "--no-progress"]
    done = subprocess.run(
        [*cli, *args, "--push-to-hub", "me/conv"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert hub.files("me/conv")[INDEX_FILE] == (out / INDEX_FILE).read_bytes()
    commits = len(hub.commits)
    # refused before any commit (in this process; the hub fixture points it at the loopback Hub): a push flag
    # without --push-to-hub, a dataset without its index
    assert main([*args, "--private"]) == 2
    assert "--private and --push-revision need --push-to-hub" in capsys.readouterr().err
    (out / INDEX_FILE).unlink()
    assert main(["push", str(out), "me/cli2"]) == 2
    err = capsys.readouterr().err
    assert "not a finished lerowds dataset" in err and "Traceback" not in err
    assert len(hub.commits) == commits  # nothing was sent


def test_source_card_metadata_keeps_license_and_tags_and_survives_a_bad_card(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert source_card_metadata(tmp_path) == {}  # no card
    (tmp_path / "README.md").write_text(SOURCE_CARD)
    assert source_card_metadata(tmp_path) == {
        "license": "apache-2.0",
        "task_categories": ["robotics"],
        "tags": ["LeRobot", "aloha"],
    }
    (tmp_path / "README.md").write_text("---\nlicense: [unclosed\n---\n")
    assert source_card_metadata(tmp_path) == {}
    assert "README.md: unreadable dataset card metadata" in caplog.text
