"""Git objects for the GitHub stand-in: blobs, trees and commits with real git SHAs.

Trees are immutable and shared between commits (as in git), so a commit costs work only
along the paths it changes; content lives in memory or in a file on disk, never both, so a
1 GiB artifact is never loaded.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

CHUNK = 1024 * 1024
MAX_BLOB = 100 * 1024 * 1024  # GitHub refuses pushes of files over 100 MiB
LFS_SPEC = "https://git-lfs.github.com/spec/v1"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_IDENT = b"videopoll-sandbox <sandbox@videopoll.invalid>"


def blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def b64_lines(data: bytes) -> bytes:
    """Base64 as GitHub shows blob content: a newline after every 60 characters."""
    encoded = base64.b64encode(data)
    return b"".join(encoded[i:i + 60] + b"\n" for i in range(0, len(encoded), 60))


def pointer_text(oid: str, size: int) -> bytes:
    """The exact pointer file Git LFS commits in place of the object."""
    return f"version {LFS_SPEC}\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Content:
    """Bytes held in memory (`data`) or read from disk in chunks (`path`)."""

    size: int
    data: bytes | None = None
    path: Path | None = None

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        stop = self.size if end is None else min(end, self.size)
        if self.data is not None:
            for offset in range(start, stop, CHUNK):
                yield self.data[offset:min(offset + CHUNK, stop)]
            return
        assert self.path is not None
        with self.path.open("rb") as handle:
            handle.seek(start)
            left = stop - start
            while left > 0:
                piece = handle.read(min(CHUNK, left))
                if not piece:
                    raise ConnectionError(f"{self.path} shrank while being served")
                left -= len(piece)
                yield piece

    def read(self) -> bytes:
        return self.data if self.data is not None else b"".join(self.chunks())

    def base64_json(self) -> Iterator[bytes]:
        """b64_lines of the content, JSON-escaped, streamed (45 input bytes make one line)."""
        rest = b""
        for piece in self.chunks():
            rest += piece
            cut = len(rest) - len(rest) % 45
            if cut:
                yield b64_lines(rest[:cut]).replace(b"\n", b"\\n")
                rest = rest[cut:]
        if rest:
            yield b64_lines(rest).replace(b"\n", b"\\n")

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for piece in self.chunks():
            digest.update(piece)
        return digest.hexdigest()

    @classmethod
    def from_path(cls, path: Path) -> tuple[Content, str, str]:
        """The content with its git blob sha and sha256, hashed in one streaming read."""
        size = path.stat().st_size
        git, plain = hashlib.sha1(b"blob %d\0" % size), hashlib.sha256()
        content = cls(size, path=path)
        for piece in content.chunks():
            git.update(piece)
            plain.update(piece)
        return content, git.hexdigest(), plain.hexdigest()


@dataclass(frozen=True)
class Prepared:
    """A file ready to commit: what the tree holds (the pointer, for LFS) and its sha."""

    path: str
    content: Content
    sha: str
    lfs_oid: str | None = None
    lfs_object: Content = Content(0)


def prepare(path: str, source: bytes | Path, lfs: bool | None) -> Prepared:
    """Hashes a file (outside any lock: a big one takes seconds).

    `lfs` None stores files over 100 MiB in Git LFS, as GitHub forces; True always does.
    """
    if isinstance(source, Path):
        content, sha, oid = Content.from_path(source)
    else:
        content, sha, oid = Content(len(source), data=bytes(source)), "", ""
    if lfs is False and content.size > MAX_BLOB:
        raise ValueError(f"{path}: GitHub refuses files over 100 MiB outside Git LFS")
    path = path.strip("/")
    if not (content.size > MAX_BLOB if lfs is None else lfs):
        return Prepared(path, content, sha or blob_sha(content.read()))
    oid = oid or content.sha256()
    pointer = pointer_text(oid, content.size)
    return Prepared(path, Content(len(pointer), data=pointer), blob_sha(pointer), oid, content)


class Entry(NamedTuple):
    mode: str  # as the API prints it: 100644, 040000, 160000
    type: str  # blob, tree, commit
    sha: str


@dataclass(frozen=True)
class Commit:
    sha: str
    tree: str
    parent: str | None
    message: str
    time: int
    files: tuple[tuple[str, str], ...]  # (path, added | modified | removed)


def _tree_bytes(entries: dict[str, Entry]) -> bytes:
    # git sorts a tree by name with "/" appended to sub-tree names.
    def key(item: tuple[str, Entry]) -> str:
        return item[0] + ("/" if item[1].type == "tree" else "")

    body = b"".join(b"%s %s\0" % (entry.mode.lstrip("0").encode(), name.encode())
                    + bytes.fromhex(entry.sha) for name, entry in sorted(entries.items(), key=key))
    return b"tree %d\0" % len(body) + body


@dataclass
class Repo:
    """One repository: branches, commits, trees, blobs and its Git LFS object store."""

    full_name: str
    private: bool = True
    default_branch: str = "main"
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    trees: dict[str, dict[str, Entry]] = field(default_factory=lambda: {EMPTY_TREE: {}})
    blobs: dict[str, Content] = field(default_factory=dict)
    lfs: dict[str, Content] = field(default_factory=dict)
    sequence: int = 0

    @property
    def empty(self) -> bool:
        return not self.branches

    def store_tree(self, entries: dict[str, Entry]) -> str:
        sha = hashlib.sha1(_tree_bytes(entries)).hexdigest()
        self.trees.setdefault(sha, entries)
        return sha

    def _apply(self, tree: str | None, changes: list[tuple[list[str], Entry | None]]) -> str | None:
        entries = dict(self.trees[tree]) if tree else {}
        nested: dict[str, list[tuple[list[str], Entry | None]]] = defaultdict(list)
        for parts, entry in changes:
            if len(parts) > 1:
                nested[parts[0]].append((parts[1:], entry))
            elif entry is None:
                entries.pop(parts[0], None)
            else:
                entries[parts[0]] = entry
        for name, inner in nested.items():
            current = entries.get(name)
            base = current.sha if current is not None and current.type == "tree" else None
            sub = self._apply(base, inner)
            if sub is None:
                entries.pop(name, None)  # git keeps no empty directories
            else:
                entries[name] = Entry("040000", "tree", sub)
        return self.store_tree(entries) if entries else None

    def commit(self, changes: dict[str, Entry | None], branch: str, now: int) -> str:
        """One new commit on `branch` (created from the default branch if new)."""
        parent = self.branches.get(branch) or self.branches.get(self.default_branch)
        base = self.commits[parent].tree if parent else None
        files: list[tuple[str, str]] = []
        for path, entry in changes.items():
            existed = base is not None and self.lookup(base, path) is not None
            status = "removed" if entry is None else ("modified" if existed else "added")
            files.append((path, status))
        parts = [(path.split("/"), entry) for path, entry in changes.items()]
        tree = self._apply(base, parts) or self.store_tree({})
        self.sequence += 1  # makes every commit unique even when the tree is not
        message = f"sandbox commit #{self.sequence}: {', '.join(changes)}"
        stamp = b"%s %d +0000" % (_IDENT, now)
        body = b"tree %s\n" % tree.encode()
        if parent:
            body += b"parent %s\n" % parent.encode()
        body += b"author %s\ncommitter %s\n\n%s\n" % (stamp, stamp, message.encode())
        sha = hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()
        self.commits[sha] = Commit(sha, tree, parent, message, now, tuple(files))
        self.branches[branch] = sha
        return sha

    def put(self, files: Iterable[Prepared], branch: str, now: int) -> dict[str, str]:
        """Commits prepared files in one commit; returns each one's blob sha."""
        changes: dict[str, Entry | None] = {}
        for item in files:
            if item.lfs_oid is not None:
                self.lfs[item.lfs_oid] = item.lfs_object
            self.blobs.setdefault(item.sha, item.content)
            changes[item.path] = Entry("100644", "blob", item.sha)
        self.commit(changes, branch, now)
        return {path: entry.sha for path, entry in changes.items() if entry}

    def resolve(self, ref: str) -> Commit | None:
        """A branch name (optionally heads/ or refs/heads/), or a full or abbreviated SHA."""
        name = ref.removeprefix("refs/").removeprefix("heads/")
        if name in self.branches:
            return self.commits[self.branches[name]]
        if ref in self.commits:
            return self.commits[ref]
        if len(ref) >= 7 and all(c in "0123456789abcdef" for c in ref):
            found = [c for sha, c in self.commits.items() if sha.startswith(ref)]
            return found[0] if len(found) == 1 else None
        return None

    def tree_sha(self, ref_or_sha: str) -> str | None:
        if ref_or_sha in self.trees:
            return ref_or_sha
        commit = self.resolve(ref_or_sha)
        return commit.tree if commit else None

    def lookup(self, tree: str, path: str) -> Entry | None:
        entry: Entry | None = Entry("040000", "tree", tree)
        for part in (p for p in path.split("/") if p):
            if entry is None or entry.type != "tree":
                return None
            entry = self.trees[entry.sha].get(part)
        return entry

    def walk(self, tree: str, recursive: bool, prefix: str = "") -> Iterator[tuple[str, Entry]]:
        """Entries in git order; a sub-tree comes right before its contents, as in ls-tree."""
        items = sorted(self.trees[tree].items(),
                       key=lambda item: item[0] + ("/" if item[1].type == "tree" else ""))
        for name, entry in items:
            yield prefix + name, entry
            if recursive and entry.type == "tree":
                yield from self.walk(entry.sha, True, prefix + name + "/")
