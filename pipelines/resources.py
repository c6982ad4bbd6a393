"""The warehouse resource: where the DuckDB file, the inbox, the registry and the scheme are.

dagster_duckdb.DuckDBResource is not used for writing: its get_connection() does not close the connection when
the body raises (see README "工程备忘"), and a leaked read-write handle locks the file for the next step.
shequ.warehouse.connect always closes.
"""

import contextlib
from collections.abc import Iterator

import dagster as dg
import duckdb

from shequ import config
from shequ.warehouse import DerivedBuild, connect

# run id -> the open DerivedBuild of that run. The job runs every step in one process (in_process_executor), so
# the derived steps of a run share one connection and one transaction (shequ.warehouse.DerivedBuild).
_BUILDS: dict[str, DerivedBuild] = {}


class ShequWarehouse(dg.ConfigurableResource):
    """仓库资源 / warehouse: DuckDB file, inbox folder, registry folder, scheme file and review folder."""

    path: str = str(config.warehouse_path())
    inbox: str = str(config.inbox_path())
    registry_dir: str = str(config.REGISTRY_DIR)
    scheme: str = str(config.DEFAULT_SCHEME)
    reviews: str = str(config.reviews_path())

    @contextlib.contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with connect(self.path) as con:
            yield con

    @contextlib.contextmanager
    def derived(self, run_id: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection of the run's DerivedBuild, opened (with BEGIN) by the first derived step. An error in
        the step rolls the whole build back: the derived tables keep the last committed refresh."""
        build = _BUILDS.get(run_id)
        if build is None:
            for other in [r for r in _BUILDS if r != run_id]:   # left by a run that ended without finishing
                _BUILDS.pop(other).rollback()
            build = _BUILDS[run_id] = DerivedBuild(self.path)
        try:
            yield build.con
        except BaseException:
            _BUILDS.pop(run_id, None)
            build.rollback()
            raise

    @staticmethod
    def finish_derived(run_id: str, commit: bool) -> float | None:
        """Commit (returns the seconds the commit took) or roll back the run's DerivedBuild."""
        build = _BUILDS.pop(run_id, None)
        if build is None:
            return None
        if commit:
            return build.commit()
        build.rollback()
        return None
