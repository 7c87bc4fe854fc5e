"""`BaseTune`: hyperparameter search with Optuna, its trials spread over the train replicas.

The tune run creates a study in PostgreSQL and submits one `tune_trial` run per trial still
to do (at most `max_concurrent_trials` at once). Kafka hands those runs to every replica of
the train service, and each asks the shared study for its hyperparameters, so the sampler
learns from every finished trial wherever it ran. Trial metrics come back as this run's
`trial_<n>` metrics; at the end the best trial's model is registered. A retried tune run
continues its study: finished trials are not run again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import optuna

from runmesh.catalog import trained_models
from runmesh.catalog.trained_models import NewModel
from runmesh.core.events import RunEventBase, RunFailed, RunMetric, RunRequest, RunSucceeded
from runmesh.pipeline.child_runs import ChildRunCancelled, ChildRunError, run_child
from runmesh.plugins import Action
from runmesh.train import study as studies
from runmesh.train.errors import TrainConfigError, TrainError
from runmesh.train.params import TrialParams, TuneParams
from runmesh.train.registration import register
from runmesh.train.resources import run_resources

log = logging.getLogger(__name__)

_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

LOG_MESSAGES = {
    "TUNE_STARTED": {"message": "study {}: {} trials to run, {} at once", "level": "info"},
    "TRIAL_ENDED": {"message": "trial run {} ended {}", "level": "info"},
    "TRIAL_FAILED": {"message": "trial run {} failed: {}", "level": "warning"},
    "BEST_REGISTERED": {
        "message": "best trial {} ({} = {:.4f}) registered as model {}",
        "level": "success",
    },
}


class TuneFailedError(TrainError):
    """No trial completed, so there is no model to register."""


class BaseTune(Action[TuneParams]):
    """Searches the hyperparameters of the built-in detector and registers the best model."""

    name = "tune"
    params_model = TuneParams
    progress_categories: ClassVar = {
        "trials": {"description": "Trials finished", "proportion": 100}
    }
    # Metrics: `trial_<n>` per trial (loss, accuracy, validation_*, step = epoch), undeclared
    # because their names depend on the study.
    log_messages: ClassVar = LOG_MESSAGES

    async def start(self) -> dict[str, object]:
        """Run the study; the result names the best trial, its params and its model."""
        params = self.params
        run = self.run
        async with run_resources(run, "tune") as res:
            settings, tenant, pool = res.settings, res.tenant, res.pool
            async with pool.acquire(timeout=30) as conn:
                if await trained_models.name_taken(conn, tenant, params.name, run.run_id):
                    raise TrainConfigError(f"name: a model named {params.name!r} exists already")
            await studies.ensure_schema(pool)
            with studies.opened_storage(settings) as rdb:
                name = studies.study_name(run.run_id)
                study = await asyncio.to_thread(
                    optuna.create_study,
                    study_name=name,
                    storage=rdb,
                    direction=params.direction,
                    load_if_exists=True,
                )
                trials = await asyncio.to_thread(study.get_trials, deepcopy=False, states=_FINISHED)
                remaining = max(0, params.n_trials - len(trials))
                run.log_message_with_code(
                    "TUNE_STARTED", name, remaining, params.max_concurrent_trials
                )
                await self._run_trials(params, name, tenant, remaining, len(trials))
                best = await asyncio.to_thread(_best_trial, study)
                return await self._register(params, study, best, pool, tenant)

    async def _run_trials(
        self, params: TuneParams, name: str, tenant: str, count: int, finished: int
    ) -> None:
        run = self.run
        settings = run.context.settings
        assert settings is not None
        limit = asyncio.Semaphore(params.max_concurrent_trials)
        done = finished
        run.set_progress(done, params.n_trials, category="trials")
        trial = TrialParams(
            study=name,
            tune_run=run.run_id,
            dataset=params.dataset,
            hyperparameters=params.hyperparameters,
            search_space=params.search_space,
            direction=params.direction,
            metric=params.metric,
            pruning=params.pruning,
            validation_split=params.validation_split,
            seed=params.seed,
        ).model_dump(mode="json")

        def relay(event: RunEventBase) -> None:
            if isinstance(event, RunMetric) and event.payload.category.startswith("trial_"):
                run.set_metrics(event.payload.values, event.payload.category, event.payload.step)

        async def one() -> None:
            nonlocal done
            async with limit:
                run.check_cancelled()
                request = RunRequest(
                    category="neural_net",
                    action="tune_trial",
                    params=trial,
                    tenant=tenant,
                    parent_run_id=run.run_id,
                )
                try:
                    terminal = await run_child(
                        settings,
                        request,
                        timeout_s=params.trial_timeout_s,
                        is_cancelled=lambda: run.is_cancelled,
                        on_event=relay,
                    )
                except ChildRunCancelled:
                    run.check_cancelled()
                    raise
                except ChildRunError as exc:
                    run.log_message_with_code("TRIAL_FAILED", request.run_id, exc)
                else:
                    if isinstance(terminal, RunSucceeded):
                        run.log_message_with_code(
                            "TRIAL_ENDED", request.run_id, terminal.payload.result
                        )
                    elif isinstance(terminal, RunFailed):
                        message = terminal.payload.message
                        run.log_message_with_code("TRIAL_FAILED", request.run_id, message)
                    else:
                        run.log_message_with_code("TRIAL_FAILED", request.run_id, "cancelled")
                done += 1
                run.set_progress(done, params.n_trials, category="trials")

        await asyncio.gather(*(one() for _ in range(count)))

    async def _register(
        self,
        params: TuneParams,
        study: optuna.Study,
        best: optuna.trial.FrozenTrial,
        pool: Any,
        tenant: str,
    ) -> dict[str, object]:
        run = self.run
        attrs = best.user_attrs
        counts = await asyncio.to_thread(_state_counts, study)
        row = await register(
            pool,
            tenant,
            NewModel(
                name=params.name,
                description=params.description,
                plugin=run.context.plugin,
                plugin_version=run.context.plugin_version,
                action=self.name,
                run_id=run.run_id,
                dataset=params.dataset.describe(),
                classes=list(attrs["classes"]),
                params={
                    "hyperparameters": attrs["hyperparameters"],
                    "seed": params.seed,
                    "validation_split": params.validation_split,
                    "study": study.study_name,
                    "trial": best.number,
                },
                metrics=dict(attrs["metrics"]),
                artifact_uri=attrs["artifact_uri"],
            ),
        )
        run.log_message_with_code("BEST_REGISTERED", best.number, params.metric, best.value, row.id)
        return {
            "study": study.study_name,
            "best_trial": best.number,
            "best_params": best.params,
            "best_value": best.value,
            "trials": counts,
            "model_id": str(row.id),
            "artifact_uri": row.artifact_uri,
        }


def _best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    try:
        return study.best_trial
    except ValueError as exc:  # Optuna: no trial is complete
        raise TuneFailedError(f"study {study.study_name}: no trial completed") from exc


def _state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts
