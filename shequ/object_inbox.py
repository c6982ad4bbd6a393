"""The inbox in object storage (issue 12 item 2; docs/lake.md, section 对象存储收件箱).

Offices upload their survey files under a bucket prefix laid out like a local inbox folder
(``s3://shequ-inbox/inbox/2024Q3/天桥区_2024Q3.csv``). ``shequ refresh --inbox s3://bucket/prefix`` and the inbox
sensor (``SHEQU_INBOX=s3://bucket/prefix``) read it with the local inbox's rules:

- The listing is s3fs ``find`` on a version-aware filesystem (ListObjectVersions, latest versions only; deleted
  keys drop out): each object's key, size, upload time, ETag and VersionId, in the local inventory's order (upload
  time, a revision after the original it corrects, key).
- The quarter comes from the key below the prefix exactly as from a local path (``ingest.rel_quarter``): a
  refresh of 2024Q3 fetches only the objects whose key says 2024Q3 or says no quarter.
- The cursor: an object whose URI and version (its VersionId; its ETag when the bucket keeps no versions) a
  *loaded* raw_file row already holds is not downloaded again; a new version of the key is. A rejected object is
  read again, as a rejected local file is (a registry or code fix may let it load).
- The size in the listing is checked against the file-size limit (``SHEQU_MAX_FILE_MB``, shequ/limits.py) before
  a byte is fetched (``too_large``). The object is then downloaded into a node-local temporary folder, handed to
  the same ``Ingestor`` as a local file (same readers, same per-file transaction) and deleted. The read is pinned
  to the version the HEAD request saw (s3fs sends If-Match / VersionId on every ranged GET), so an upload racing
  the download fails the read instead of mixing two versions.
- An object listed but gone when it is fetched gets a raw_file row with reason ``object_missing``; the rest of
  the inbox still loads.
- An unreachable object store stops before anything is written, with a Chinese message naming the endpoint
  (``ObjectStoreError``); the listing is the first request of every refresh and sensor tick.

raw_file records the provenance (migration 0008): source_uri (s3://bucket/key), object_key, object_version,
object_etag. Endpoint and credentials are the lake's (``lake.LakeConfig.load(need_catalog=False)``:
``$SHEQU_HOME/lake/lake.json`` and the 0600 ``s3_credentials.json`` that scripts/install_lake.sh writes, or
``SHEQU_LAKE_S3_ENDPOINT`` / ``SHEQU_LAKE_S3_ACCESS_KEY`` / ``SHEQU_LAKE_S3_SECRET_KEY``); the bucket is the URI's.
"""

import dataclasses
import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb

from . import limits
from .config import is_object_inbox
from .ingest import REVISION_MARK, FileSummary, Ingestor, rel_quarter

CHUNK = 1 << 20
LOCAL_NAME_BYTES = 200          # a key's last segment may be up to 1,024 bytes; a local file name up to 255
CHECK = "请检查端点、网络与凭据（SHEQU_LAKE_S3_*，或 scripts/install_lake.sh 写出的 lake.json，见 docs/lake.md）"


class ObjectStoreError(RuntimeError):
    """The object store cannot be used: a Chinese message naming the endpoint and the bucket."""


@dataclass(frozen=True)
class InboxObject:
    bucket: str
    key: str                    # key inside the bucket
    rel: str                    # key below the inbox prefix: what a local inbox calls the relative path
    size: int
    modified: dt.datetime       # upload time, local and naive like a local file's recorded mtime
    etag: str                   # without quotes
    version_id: str | None      # None when the bucket keeps no versions

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def version(self) -> str:
        """What tells two uploads of one key apart (the cursor's version)."""
        return self.version_id or self.etag


def parse_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, prefix without slashes at either end)."""
    if not is_object_inbox(uri):
        raise ObjectStoreError(f"对象存储收件箱地址 {uri!r} 无效：应为 s3://桶/前缀")
    bucket, _, prefix = uri.strip()[len("s3://"):].partition("/")
    if not bucket:
        raise ObjectStoreError(f"对象存储收件箱地址 {uri!r} 无效：缺少桶名（应为 s3://桶/前缀）")
    return bucket, prefix.strip("/")


def _first_line(e: BaseException) -> str:
    s = str(e).strip() or type(e).__name__
    return s.splitlines()[0][:300]


def _local_name(rel: str) -> str:
    """The key's last segment as a local file name (same suffix; the stem shortened when the file system could
    not hold it). The name still tells the readers the format and the period and district it may name."""
    p = PurePosixPath(rel)
    stem, suffix = p.stem, p.suffix
    while len((stem + suffix).encode("utf-8")) > LOCAL_NAME_BYTES and stem:
        stem = stem[:-1]
    return (stem + suffix) if stem else "object" + suffix[:LOCAL_NAME_BYTES - 6]


def _bad_segment(rel: str) -> str | None:
    """A '.' or '..' segment of a key (S3 allows them; a local path would climb out of the download folder)."""
    return next((s for s in rel.split("/") if s in (".", "..")), None)


class ObjectInbox:
    """One inbox prefix in a bucket: list it, fetch objects, read them with an Ingestor."""

    def __init__(self, uri: str, cfg=None):
        self.uri = uri.strip().rstrip("/")
        self.bucket, self.prefix = parse_uri(self.uri)
        if cfg is None:
            from .lake import LakeConfig, LakeError

            try:
                cfg = LakeConfig.load(need_catalog=False)
            except LakeError as e:
                raise ObjectStoreError(f"对象存储收件箱 {self.uri} 无法使用：{e}") from e
        self.cfg = cfg
        self.endpoint = cfg.s3_endpoint
        self._fs = None
        self.downloaded: list[str] = []     # keys fetched by this instance, in order

    @property
    def fs(self):
        if self._fs is None:
            self._fs = self.cfg.filesystem(version_aware=True)
        return self._fs

    def where(self) -> str:
        return f"对象存储 {self.endpoint}（桶 {self.bucket}，前缀 {self.prefix or '（整个桶）'}）"

    # -------------------------------------------------------------- listing
    def list_objects(self) -> list[InboxObject]:
        """Every object under the prefix (latest versions), in the local inventory's order. ObjectStoreError
        naming the endpoint when the store does not answer or the bucket does not exist."""
        root = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        try:
            self.fs.invalidate_cache()
            found = self.fs.find(root, detail=True)
        except FileNotFoundError as e:
            raise ObjectStoreError(f"{self.where()}：桶 {self.bucket} 不存在（{_first_line(e)}）。{CHECK}") from e
        except Exception as e:  # noqa: BLE001 - connection refused, timeout, access denied: all name the endpoint
            raise ObjectStoreError(f"无法列出{self.where()}中的文件：{_first_line(e)}。{CHECK}；"
                                   f"仓库未作任何改动") from e
        out = []
        for name, info in found.items():
            if info.get("type") != "file" or not name.startswith(self.bucket + "/"):
                continue
            key = name[len(self.bucket) + 1:]
            if key.endswith("/"):          # a folder placeholder some upload tools create
                continue
            rel = key[len(self.prefix) + 1:] if self.prefix else key
            version = info.get("VersionId")
            modified = info.get("LastModified") or dt.datetime.now().astimezone()
            if modified.tzinfo is not None:
                modified = modified.astimezone().replace(tzinfo=None)
            out.append(InboxObject(self.bucket, key, rel, int(info.get("size") or 0), modified,
                                   str(info.get("ETag") or "").strip('"'),
                                   None if version in (None, "", "null") else str(version)))
        # the local inventory's order (ingest.inventory): oldest first, a revision after the original on a tie
        return sorted(out, key=lambda o: (int(o.modified.timestamp()),
                                          bool(REVISION_MARK.search(PurePosixPath(o.rel).stem)), o.rel))

    # -------------------------------------------------------------- one object
    def download(self, obj: InboxObject, folder: Path) -> tuple[Path, InboxObject]:
        """Fetch the key's current version into ``folder``; returns the local file and the object as fetched
        (its version may be newer than the listing's). FileNotFoundError when the key is gone; limits.TooLarge
        when the fetched version is over the size limit; ObjectStoreError when the store fails."""
        folder.mkdir(parents=True, exist_ok=True)
        local = folder / _local_name(obj.rel)
        last = None
        for _attempt in range(2):      # one retry: an upload replacing the key between HEAD and GET
            try:
                with self.fs.open(f"{obj.bucket}/{obj.key}", "rb") as f:
                    d = f.details
                    version = d.get("VersionId")
                    modified = d.get("LastModified") or obj.modified
                    if isinstance(modified, dt.datetime) and modified.tzinfo is not None:
                        modified = modified.astimezone().replace(tzinfo=None)
                    got = dataclasses.replace(
                        obj, size=int(d.get("size", obj.size)), etag=str(d.get("ETag") or obj.etag).strip('"'),
                        version_id=None if version in (None, "", "null") else str(version), modified=modified)
                    limits.check_size(got.size)
                    n = 0
                    with open(local, "wb") as out:
                        while chunk := f.read(CHUNK):
                            n += len(chunk)
                            limits.check_size(n)     # longer than its HEAD said: never more than the limit
                            out.write(chunk)
                self.downloaded.append(obj.key)
                return local, got
            except (FileNotFoundError, limits.TooLarge):
                local.unlink(missing_ok=True)
                raise
            except Exception as e:  # noqa: BLE001 - retried once, then named with the endpoint
                local.unlink(missing_ok=True)
                last = e
        raise ObjectStoreError(f"无法从{self.where()}下载 {obj.uri}：{_first_line(last)}。{CHECK}") from last

    def content_quarters(self, obj: InboxObject) -> list[str]:
        """Quarters of an object whose key names none, from its contents (pipeline.file_quarters on a
        temporary copy); [] when it is too large, gone, or tells none."""
        from .pipeline import file_quarters

        with tempfile.TemporaryDirectory(prefix="shequ_inbox_") as tmp:
            try:
                limits.check_size(obj.size)
                local, _ = self.download(obj, Path(tmp))
            except (FileNotFoundError, limits.TooLarge):
                return []
            return file_quarters(local, Path(tmp))


# ------------------------------------------------------------------ what the warehouse holds
def recorded_objects(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], tuple[str, str]]:
    """(source_uri, version) -> (file_id, status) of every raw_file row read from object storage."""
    cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                      "WHERE table_name = 'raw_file'").fetchall()}
    if "source_uri" not in cols:        # a warehouse from before migration 0008
        return {}
    return {(u, v): (f, s) for u, v, f, s in con.execute(
        "SELECT source_uri, coalesce(object_version, object_etag), file_id, status FROM raw_file "
        "WHERE source_uri IS NOT NULL ORDER BY ingest_seq").fetchall()}


# ------------------------------------------------------------------ the sensor
def new_objects(ob: ObjectInbox, prev: dict | None, recorded_etags: set[str]
                ) -> tuple[dict[str, list], list[InboxObject]]:
    """The sensor's rule (pipelines/automation.py): list the prefix; an object counts when its ETag (the hash the
    store gives its bytes) is not among the previous tick's (``prev``: {rel: [size, etag, version_id]}), or,
    without a previous tick, not among the ETags the warehouse recorded. Returns (the new state, the objects
    that count)."""
    objects = ob.list_objects()
    known = {v[1] for v in prev.values()} if prev is not None else recorded_etags
    return ({o.rel: [o.size, o.etag, o.version_id] for o in objects},
            [o for o in objects if o.etag not in known])


# ------------------------------------------------------------------ the refresh's two inbox steps
def scan(con: duckdb.DuckDBPyConnection | None, inbox: "str | ObjectInbox"):
    """pipeline.scan_inbox for an object inbox: every object with its quarters (from the key, else from the
    contents) and, when the warehouse recorded this version, its file id and status. Nothing is downloaded for
    a key that names its quarter."""
    from .pipeline import InboxFile

    ob = inbox if isinstance(inbox, ObjectInbox) else ObjectInbox(inbox)
    recorded = recorded_objects(con) if con is not None else {}
    out = []
    for o in ob.list_objects():
        q = rel_quarter(o.rel)
        rec = recorded.get((o.uri, o.version))
        out.append(InboxFile(PurePosixPath(o.key), o.rel, rec[0] if rec else "", o.size,
                             [q] if q else ob.content_quarters(o), rec[1] if rec else None, origin=o))
    return out


def file_ids_by_quarter(con: duckdb.DuckDBPyConnection, files) -> dict[str, list[str]]:
    """quarter -> file ids of the scanned objects, looked up after a refresh has read them."""
    recorded = recorded_objects(con)
    out: dict[str, list[str]] = {}
    for f in files:
        fid = recorded.get((f.origin.uri, f.origin.version), (f.file_id,))[0] if f.origin else f.file_id
        for q in f.quarters:
            out.setdefault(q, []).append(fid)
    return out


def ingest_objects(con: duckdb.DuckDBPyConnection, inbox: "str | ObjectInbox", quarter: str | None = None,
                   on_file=None) -> list[FileSummary]:
    """ingest.ingest_inbox for an object inbox: list, then for each object of the quarter (or naming none)
    not already loaded at this version, check its size, download, read, delete. One summary per object."""
    from .progress import emit

    ob = inbox if isinstance(inbox, ObjectInbox) else ObjectInbox(inbox)
    objects = ob.list_objects()         # the first request: an unreachable store stops here, nothing written
    todo = [o for o in objects if not (quarter and (pq := rel_quarter(o.rel)) and pq != quarter)]
    recorded = recorded_objects(con)
    out = []
    tmp = Path(tempfile.mkdtemp(prefix="shequ_inbox_"))
    try:
        ing = Ingestor(con, tmp)
        for i, obj in enumerate(todo, start=1):
            emit("staged", quarter, i, len(todo), obj.rel)
            s = _ingest_one(ob, ing, obj, recorded, tmp / str(i))
            out.append(s)
            if on_file:
                on_file(s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _ingest_one(ob: ObjectInbox, ing: Ingestor, obj: InboxObject, recorded: dict, folder: Path) -> FileSummary:
    rec = recorded.get((obj.uri, obj.version))
    if rec and rec[1] == "loaded":      # this version was read and loaded before: not fetched again
        return FileSummary(obj.rel, rec[0], "unchanged")
    seg = _bad_segment(obj.rel)
    if seg:
        return ing.reject_object(obj, obj.rel, "hidden_file", f"对象键中有路径段“{seg}”（以“.”开头），不读取")
    try:
        limits.check_size(obj.size)     # the listed size, before a byte is fetched
    except limits.TooLarge as e:
        return ing.reject_object(obj, obj.rel, "too_large", e.message)
    try:
        local, got = ob.download(obj, folder)
    except FileNotFoundError:
        return ing.reject_object(obj, obj.rel, "object_missing",
                                 f"对象 {obj.uri}（版本 {obj.version}）列出后、读取前已被删除，未读取；"
                                 f"重新上传后，下次刷新会读取")
    except limits.TooLarge as e:
        return ing.reject_object(obj, obj.rel, "too_large", e.message)
    try:
        return ing.ingest(local, rel=obj.rel, origin=got)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
