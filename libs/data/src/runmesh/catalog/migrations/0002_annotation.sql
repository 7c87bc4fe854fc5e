-- Annotation in the catalog (DESIGN §7): projects over a data collection, one task per data
-- unit of a project, annotators' assignments, and versioned ground-truth datasets. Every
-- `data` column holds a DM document (runmesh.common.dm.DMData), validated before it is
-- stored. Every row carries its tenant; every query filters by it, and rows are created only
-- under parents of the same tenant (runmesh.common.catalog.annotation checks that).

-- `label_schema`: {"classes": [{"id": 0, "name": "cat"}, ...]}, ids and names unique. The ids
-- are what COCO category ids and YOLO class indices become, so they never change.
CREATE TABLE IF NOT EXISTS catalog.projects (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    data_collection_id uuid NOT NULL REFERENCES catalog.data_collections (id),
    annotation_type text NOT NULL CHECK (annotation_type IN (
        'image_detection', 'image_segmentation', 'image_keypoints', 'image_classification'
    )),
    label_schema jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name)
);
CREATE INDEX IF NOT EXISTS projects_tenant_created
    ON catalog.projects (tenant, created_at DESC, id DESC);

-- One task per (project, data unit): making tasks again for the same units finds the rows
-- that exist (to_task runs executed again add no duplicates). `data` is null until someone
-- annotates the task.
CREATE TABLE IF NOT EXISTS catalog.tasks (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    project_id uuid NOT NULL REFERENCES catalog.projects (id),
    data_unit_id bigint NOT NULL REFERENCES catalog.data_units (id),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN (
        'pending', 'in_progress', 'review', 'completed', 'skipped'
    )),
    data jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, data_unit_id)
);
-- Lists page by id (all of a tenant's, or a project's, optionally of one status); exports
-- stream a project's tasks in id order.
CREATE INDEX IF NOT EXISTS tasks_tenant_id ON catalog.tasks (tenant, id);
CREATE INDEX IF NOT EXISTS tasks_tenant_project_id ON catalog.tasks (tenant, project_id, id);
CREATE INDEX IF NOT EXISTS tasks_tenant_project_status_id
    ON catalog.tasks (tenant, project_id, status, id);
-- Deleting data units (an upload's rollback) checks the foreign key through this.
CREATE INDEX IF NOT EXISTS tasks_data_unit ON catalog.tasks (data_unit_id);

CREATE TABLE IF NOT EXISTS catalog.assignments (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    task_id bigint NOT NULL REFERENCES catalog.tasks (id),
    status text NOT NULL DEFAULT 'submitted'
        CHECK (status IN ('submitted', 'approved', 'rejected')),
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS assignments_task_id ON catalog.assignments (task_id, id);
CREATE INDEX IF NOT EXISTS assignments_tenant_id ON catalog.assignments (tenant, id);

CREATE TABLE IF NOT EXISTS catalog.ground_truth_datasets (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    name text NOT NULL,
    project_id uuid REFERENCES catalog.projects (id),
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name)
);
CREATE INDEX IF NOT EXISTS ground_truth_datasets_tenant_created
    ON catalog.ground_truth_datasets (tenant, created_at DESC, id DESC);

-- A version is written once, with all its items, in one transaction.
CREATE TABLE IF NOT EXISTS catalog.ground_truth_versions (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    dataset_id uuid NOT NULL REFERENCES catalog.ground_truth_datasets (id),
    version text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dataset_id, version)
);
CREATE INDEX IF NOT EXISTS ground_truth_versions_dataset_created
    ON catalog.ground_truth_versions (tenant, dataset_id, created_at DESC, id DESC);

-- `category` is the item's split (train, validation, test) when the dataset has one.
CREATE TABLE IF NOT EXISTS catalog.ground_truth_items (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    version_id uuid NOT NULL REFERENCES catalog.ground_truth_versions (id),
    data_unit_id bigint REFERENCES catalog.data_units (id),
    category text CHECK (category IN ('train', 'validation', 'test')),
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ground_truth_items_version_id
    ON catalog.ground_truth_items (version_id, id);
CREATE INDEX IF NOT EXISTS ground_truth_items_data_unit
    ON catalog.ground_truth_items (data_unit_id) WHERE data_unit_id IS NOT NULL;
