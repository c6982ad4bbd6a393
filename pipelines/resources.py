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
from shequ.warehouse import connect


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
