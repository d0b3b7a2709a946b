"""Where pretrained expert weights come from, and the errors that say how to get them without network access.

An expert's ``checkpoint:`` is either a local weights file (a path, or a name ending in a weights suffix) or a
Hugging Face hub repo id. Hub access is checked before a large model is allocated, so an offline machine fails in
seconds with a message naming the hub id and how to point ``checkpoint:`` at a local copy.
"""

from __future__ import annotations

from pathlib import Path

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".npz")


def looks_like_path(checkpoint: str) -> bool:
    """A checkpoint naming a file (absolute/relative path or a weights suffix) rather than a hub repo id."""
    return checkpoint.startswith(("/", "./", "../", "~")) or checkpoint.endswith(WEIGHT_SUFFIXES)


def local_checkpoint(checkpoint: str | None) -> Path | None:
    """The local file ``checkpoint`` names, or ``None`` for a hub id; ``FileNotFoundError`` for a missing file."""
    if not checkpoint or not (looks_like_path(checkpoint) or Path(checkpoint).expanduser().exists()):
        return None
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist; fix the expert's `checkpoint:` path or drop "
                                "it to use the preset's hub weights")
    return path


def ensure_hub_reachable(hub_id: str, where: str, probe: str = "config.json") -> None:
    """Fail before allocating a large model (ConvNeXt-XXL is 850 M parameters) when the hub repo is unreachable.

    Offline, huggingface_hub retries for about 20 s first unless ``HF_HUB_OFFLINE=1`` is set.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        hf_hub_download(hub_id, probe)
    except LocalEntryNotFoundError as err:  # not reachable and not cached
        raise RuntimeError(offline_message(where, hub_id, err)) from None
    except EntryNotFoundError:
        return  # the repo is reachable; it just has no such file
    except OSError as err:
        raise RuntimeError(offline_message(where, hub_id, err)) from None


def offline_message(where: str, hub_id: str, err: Exception) -> str:
    """What went wrong fetching ``hub_id`` and how to use a local copy instead."""
    detail = str(err).splitlines()[0] if str(err) else "no detail"
    return (f"{where}: could not fetch pretrained weights from the Hugging Face hub repo '{hub_id}' "
            f"({type(err).__name__}: {detail}). Without network access: download them on a connected machine "
            f"(`huggingface-cli download {hub_id}`), copy the weights file here and set this expert's "
            "`checkpoint:` to its local path (e.g. `checkpoint: /data/weights/model.safetensors`), or point HF_HOME "
            "at a cache that already holds them.")
