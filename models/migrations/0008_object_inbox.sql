-- 0008: provenance of files read from an inbox in object storage (issue 12 item 2; shequ/object_inbox.py).
-- source_uri     s3://bucket/key of the object the file was read from (NULL: a local inbox folder)
-- object_key     its key inside the bucket
-- object_version its VersionId when the bucket keeps versions (NULL otherwise)
-- object_etag    its ETag (without quotes): with the version, what tells a new upload of the same key
-- The refresh does not download an object whose source_uri and version (or ETag) a loaded row already holds.
ALTER TABLE raw_file ADD COLUMN IF NOT EXISTS source_uri VARCHAR;
ALTER TABLE raw_file ADD COLUMN IF NOT EXISTS object_key VARCHAR;
ALTER TABLE raw_file ADD COLUMN IF NOT EXISTS object_version VARCHAR;
ALTER TABLE raw_file ADD COLUMN IF NOT EXISTS object_etag VARCHAR;
