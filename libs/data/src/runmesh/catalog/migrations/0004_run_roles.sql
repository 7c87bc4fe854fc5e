-- Published plugin code (tenant code) reaches the catalog through a login role of its run's
-- own (runmesh.common.catalog.run_roles), never through the platform's user: a member of
-- `runmesh_tenant_code`, which may use the catalog's data tables and nothing else, and only
-- the rows of the run's tenant (row-level security). The platform's user owns the tables and
-- so bypasses row-level security (no FORCE): its own queries are unaffected.

-- Roles are cluster-wide and every database of a cluster (the tests' included) runs this
-- migration: create the group once, tolerate another database (or a concurrent migration)
-- having done it. An operator who gives the platform's user no CREATEROLE creates the group
-- beforehand as a superuser; then nothing here needs the privilege.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'runmesh_tenant_code') THEN
        CREATE ROLE runmesh_tenant_code
            NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'role runmesh_tenant_code is missing and % may not create it', current_user
            USING HINT = format(
                'As a superuser: ALTER ROLE %I CREATEROLE (workers need it to run published'
                ' plugins), or CREATE ROLE runmesh_tenant_code NOLOGIN', current_user);
END
$$;

-- The run roles that exist, so that a worker that died leaves nothing behind for good
-- (drop_expired_run_roles) and so that current_tenant() knows a role's tenant. Tenant code
-- must not read it: it would learn other runs' roles and tenants.
CREATE TABLE IF NOT EXISTS catalog.run_roles (
    role_name text PRIMARY KEY,
    tenant text NOT NULL,
    run_id uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS run_roles_expires ON catalog.run_roles (expires_at);
REVOKE ALL ON catalog.run_roles FROM PUBLIC;

-- The tenant of the session's run role, or NULL (no row: the platform's user, or a role being
-- dropped). SECURITY DEFINER because tenant code may not read run_roles itself. It reads
-- `session_user`, the role that logged in: inside a SECURITY DEFINER function `current_user`
-- is the function's owner, and `session_user` stays the run role even after a `SET ROLE
-- runmesh_tenant_code` (which the member may do). The search path is fixed, pg_temp last, and
-- every name is qualified, so a caller cannot substitute a table or operator of its own.
CREATE OR REPLACE FUNCTION catalog.current_tenant() RETURNS text
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, catalog, pg_temp
AS $$
    SELECT r.tenant FROM catalog.run_roles AS r WHERE r.role_name = session_user::text
$$;
REVOKE ALL ON FUNCTION catalog.current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION catalog.current_tenant() TO runmesh_tenant_code;

GRANT USAGE ON SCHEMA catalog TO runmesh_tenant_code;

-- The data tables, listed one by one: a table a later migration adds is not tenant code's
-- until that migration grants it and gives it a policy (a test checks the policy). No
-- TRUNCATE (it ignores row-level security), REFERENCES or TRIGGER.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    catalog.storages,
    catalog.data_collections,
    catalog.data_units,
    catalog.projects,
    catalog.tasks,
    catalog.assignments,
    catalog.ground_truth_datasets,
    catalog.ground_truth_versions,
    catalog.ground_truth_items,
    catalog.models
TO runmesh_tenant_code;
-- nextval for the bigserial ids; no UPDATE, so no setval that would disturb the platform.
GRANT USAGE, SELECT ON
    catalog.data_units_id_seq,
    catalog.tasks_id_seq,
    catalog.assignments_id_seq,
    catalog.ground_truth_items_id_seq
TO runmesh_tenant_code;

-- One policy per table, for the group only (roles without a policy see no rows once row-level
-- security is on, the owner excepted). `(SELECT catalog.current_tenant())` is computed once
-- per query (an init plan) instead of once per row.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'storages', 'data_collections', 'data_units', 'projects', 'tasks', 'assignments',
        'ground_truth_datasets', 'ground_truth_versions', 'ground_truth_items', 'models'
    ] LOOP
        EXECUTE format('ALTER TABLE catalog.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_code ON catalog.%I', t);
        EXECUTE format(
            'CREATE POLICY tenant_code ON catalog.%I TO runmesh_tenant_code'
            ' USING (tenant = (SELECT catalog.current_tenant()))'
            ' WITH CHECK (tenant = (SELECT catalog.current_tenant()))',
            t
        );
    END LOOP;
END
$$;
