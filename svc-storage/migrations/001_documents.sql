-- svc-storage: documents, their OCR and archive job state, and full-text search.
-- A document belongs to an organization; the same bytes (sha256) are stored once per
-- organization. The *_job columns hold the Redis stream entry id of the job in flight,
-- 'lost' (a worker reported it gone: re-enqueue at once) or 'claim:<token>' while an instance
-- is enqueuing it; *_job_at is when that column last changed or was checked.
CREATE TABLE documents (
    id                uuid PRIMARY KEY,
    org_id            text NOT NULL,
    user_id           text NOT NULL,
    filename          text NOT NULL,
    title             text,
    content_type      text NOT NULL,
    size              bigint NOT NULL CHECK (size >= 0),
    sha256            text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    tags              text[] NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    ocr_status        text NOT NULL DEFAULT 'queued'
                      CHECK (ocr_status IN ('queued', 'processing', 'done', 'failed')),
    ocr_text          text,
    ocr_confidence    double precision,
    ocr_pages         integer,
    ocr_error         text,
    ocr_job           text,
    ocr_job_at        timestamptz NOT NULL DEFAULT now(),
    archive_status    text NOT NULL DEFAULT 'queued'
                      CHECK (archive_status IN ('queued', 'processing', 'done', 'failed')),
    archive_location  text,
    archive_error     text,
    archive_job       text,
    archive_job_at    timestamptz NOT NULL DEFAULT now(),
    local_evicted     boolean NOT NULL DEFAULT false,
    search            tsvector GENERATED ALWAYS AS (
                          setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') ||
                          setweight(to_tsvector('english'::regconfig, filename), 'B') ||
                          setweight(to_tsvector('english'::regconfig, coalesce(ocr_text, '')), 'C')
                      ) STORED,
    UNIQUE (org_id, sha256)
);

CREATE INDEX documents_org_created ON documents (org_id, created_at DESC, id DESC);
CREATE INDEX documents_search ON documents USING gin (search);
CREATE INDEX documents_tags ON documents USING gin (tags);
CREATE INDEX documents_ocr_pending ON documents (ocr_job_at)
    WHERE ocr_status IN ('queued', 'processing');
CREATE INDEX documents_archive_pending ON documents (archive_job_at)
    WHERE archive_status IN ('queued', 'processing');
