"""Configuration: ``gatecheck.yaml``, ``thresholds.yaml``, ``gates/*.yaml``, ``suites/*.yaml``.

- :mod:`~gatecheck.config.models` — the strict, frozen models of the four file kinds and
  :class:`Project` (a source's own configuration and query models live with the source);
- :mod:`~gatecheck.config.loading` — reading YAML with limits, ``${VAR}`` expansion,
  :func:`load_project`;
- :mod:`~gatecheck.config.problems` — pydantic's errors as one-line problems;
- :mod:`~gatecheck.config.checks` — the cross-checks that span files.

Loading collects *every* problem and raises one :class:`~gatecheck.errors.ConfigError`
carrying all of them, so ``gatecheck validate`` can show the whole list at once.
"""

from gatecheck.config.checks import cross_check, threshold_problems, threshold_uses
from gatecheck.config.loading import config_hash, expand_env, load_project
from gatecheck.config.models import (
    BUILTIN_PARAMETERS,
    DECLARED_THRESHOLDS,
    GATES_DIR,
    PROJECT_FILE,
    SUITES_DIR,
    THRESHOLDS_FILE,
    CheckRef,
    EnvironmentConfig,
    Evidence,
    ExpectationSpec,
    GateConfig,
    HistoryConfig,
    NotifyTarget,
    ParameterRef,
    Project,
    ProjectConfig,
    ResolvedThreshold,
    RollbackRef,
    ServiceConfig,
    Soak,
    SuiteConfig,
    SuiteWindow,
    ThresholdsConfig,
    resolve_thresholds,
)
from gatecheck.sources import SourceConfig

__all__ = [
    "BUILTIN_PARAMETERS",
    "DECLARED_THRESHOLDS",
    "GATES_DIR",
    "PROJECT_FILE",
    "SUITES_DIR",
    "THRESHOLDS_FILE",
    "CheckRef",
    "EnvironmentConfig",
    "Evidence",
    "ExpectationSpec",
    "GateConfig",
    "HistoryConfig",
    "NotifyTarget",
    "ParameterRef",
    "Project",
    "ProjectConfig",
    "ResolvedThreshold",
    "RollbackRef",
    "ServiceConfig",
    "Soak",
    "SourceConfig",
    "SuiteConfig",
    "SuiteWindow",
    "ThresholdsConfig",
    "config_hash",
    "cross_check",
    "expand_env",
    "load_project",
    "resolve_thresholds",
    "threshold_problems",
    "threshold_uses",
]
