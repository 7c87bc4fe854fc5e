-- The data catalog (DESIGN §7): where data lives (storages), what a data unit of a collection
-- is made of (data_collections.file_specifications) and the units uploads register. Every row
-- carries its tenant; every query filters by it.

-- A place files are read from. `config` depends on `provider` and is validated before it is
-- stored (runmesh.common.catalog.models): file {root}, s3 {bucket, prefix, endpoint_url},
-- http {base_url, allow_private}. Credentials never go here; services take them from their
-- environment.
CREATE TABLE IF NOT EXISTS catalog.storages (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    name text NOT NULL,
    provider text NOT NULL CHECK (provider IN ('file', 's3', 'http')),
    config jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name)
);
CREATE INDEX IF NOT EXISTS storages_tenant_created
    ON catalog.storages (tenant, created_at DESC, id DESC);

-- `file_specifications`: [{name, required, extensions: [".jpg", ...], is_primary}], the files
-- one data unit groups (by file stem); at most one is primary.
CREATE TABLE IF NOT EXISTS catalog.data_collections (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    file_specifications jsonb NOT NULL,
    data_unit_meta_schema jsonb,          -- JSON Schema of data_units.meta, or null
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name)
);
CREATE INDEX IF NOT EXISTS data_collections_tenant_created
    ON catalog.data_collections (tenant, created_at DESC, id DESC);

-- One unit of a collection: the files that share a stem (`unit_key`), by specification name:
-- {spec: {uri, size, checksum, media_type}}. A run that is executed again writes the same
-- (upload_run_id, unit_key) pairs, which update the rows the first execution wrote.
CREATE TABLE IF NOT EXISTS catalog.data_units (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    data_collection_id uuid NOT NULL REFERENCES catalog.data_collections (id),
    unit_key text NOT NULL,
    files jsonb NOT NULL,
    meta jsonb NOT NULL DEFAULT '{}',
    upload_run_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (upload_run_id, unit_key)
);
CREATE INDEX IF NOT EXISTS data_units_tenant_collection
    ON catalog.data_units (tenant, data_collection_id, id);
