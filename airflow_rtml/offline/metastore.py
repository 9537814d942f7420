"""The Hive metastore calls the offline half needs, over Thrift: tables of the archive, partitions registered once.

Every function takes a connected ``hmsclient.HMSClient`` — the client Airflow's ``HiveMetastoreHook`` returns
(``get_metastore_client()``) — so the same code runs in a task, in the local stack's health check and in tests.

Guarantees:

* :func:`ensure_table` creates an external Parquet table partitioned by ``dt``/``hour`` or checks that the
  existing one has exactly the expected columns; a difference raises :class:`ArchiveSchemaMismatch` naming the
  columns, before anything is written or registered.
* :func:`register_partition` registers a partition at most once (``ifNotExists``): a second call for the same
  values is a no-op that reports ``False``; a partition already registered at a *different* location raises
  :class:`PartitionLocationConflict` instead of silently keeping the old one (what ``ADD IF NOT EXISTS`` does).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from airflow_rtml.exceptions import ArchiveSchemaMismatch, PartitionLocationConflict

PARQUET = {
    "input": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "output": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "serde": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
}
PARTITION_KEYS = ("dt", "hour")


@contextmanager
def metastore_client(host: str, port: int, timeout_s: float = 10.0) -> Iterator:
    """A connected Thrift client of the metastore at ``host:port`` (plain socket, no SASL), closed on exit."""
    import logging

    from hmsclient import hmsclient
    from thrift.protocol import TBinaryProtocol
    from thrift.transport import TSocket, TTransport

    logging.getLogger("thrift").setLevel(logging.CRITICAL)  # it logs every refused connect at ERROR
    sock = TSocket.TSocket(host, port)
    sock.setTimeout(int(timeout_s * 1000))
    client = hmsclient.HMSClient(iprot=TBinaryProtocol.TBinaryProtocol(TTransport.TBufferedTransport(sock)))
    with client as c:
        yield c


def _ttypes():
    from hmsclient.genthrift.hive_metastore import ttypes

    return ttypes


def ensure_database(client, name: str, location: str) -> bool:
    """Create database ``name`` at ``location`` unless it exists; True if it was created."""
    t = _ttypes()
    try:
        client.get_database(name)
        return False
    except t.NoSuchObjectException:
        pass
    try:
        client.create_database(t.Database(name=name, description="airflow-rtml", locationUri=location, parameters={}))
    except t.AlreadyExistsException:  # created meanwhile by a concurrent task
        return False
    return True


def ensure_table(client, db: str, table: str, columns: Sequence[tuple[str, str]], location: str) -> bool:
    """Create the external Parquet table ``db.table`` (``columns`` = (name, Hive type) pairs, partitioned by
    ``dt``/``hour``) unless it exists; check an existing one has exactly these columns. True if created."""
    t = _ttypes()
    want = [(n.lower(), ty.lower()) for n, ty in columns]
    try:
        existing = client.get_table(db, table)
    except t.NoSuchObjectException:
        existing = None
    if existing is not None:
        have = [(c.name.lower(), c.type.lower()) for c in existing.sd.cols]
        keys = [k.name.lower() for k in existing.partitionKeys]
        if have != want or keys != list(PARTITION_KEYS):
            raise ArchiveSchemaMismatch(
                f"Hive table {db}.{table} has columns {have} partitioned by {keys}; the archive writes {want} "
                f"partitioned by {list(PARTITION_KEYS)}. Nothing was written. To fix this, archive into a new table "
                f"(or ALTER the table to the new schema and re-archive), never into one with another schema."
            )
        return False
    sd = t.StorageDescriptor(
        cols=[t.FieldSchema(name=n, type=ty, comment=None) for n, ty in columns], location=location,
        inputFormat=PARQUET["input"], outputFormat=PARQUET["output"], compressed=False, numBuckets=-1,
        serdeInfo=t.SerDeInfo(name=table, serializationLib=PARQUET["serde"], parameters={"serialization.format": "1"}),
        bucketCols=[], sortCols=[], parameters={}, storedAsSubDirectories=False,
    )
    tbl = t.Table(
        tableName=table, dbName=db, owner="airflow-rtml", sd=sd, tableType="EXTERNAL_TABLE",
        partitionKeys=[t.FieldSchema(name=k, type="string", comment=None) for k in PARTITION_KEYS],
        parameters={"EXTERNAL": "TRUE", "rtml.partitioned_by": "event time (hour of the record's timestamp, UTC)"},
    )
    try:
        client.create_table(tbl)
    except t.AlreadyExistsException:
        return ensure_table(client, db, table, columns, location)  # a concurrent creator: check what it made
    return True


def partition_name(values: Sequence[str]) -> str:
    """``dt=2026-01-01/hour=00``: the form Airflow's ``NamedHivePartitionSensor`` takes after ``db.table/``."""
    return "/".join(f"{k}={v}" for k, v in zip(PARTITION_KEYS, values, strict=True))


def register_partition(client, db: str, table: str, values: Sequence[str], location: str,
                       parameters: dict[str, str] | None = None) -> bool:
    """Register partition ``values`` of ``db.table`` at ``location`` at most once; True if this call added it."""
    t = _ttypes()
    tbl = client.get_table(db, table)
    sd = copy.deepcopy(tbl.sd)
    sd.location = location
    part = t.Partition(values=list(values), dbName=db, tableName=table, sd=sd, parameters=dict(parameters or {}))
    result = client.add_partitions_req(t.AddPartitionsRequest(dbName=db, tblName=table, parts=[part],
                                                              ifNotExists=True, needResult=True))
    if result.partitions:
        return True
    existing = client.get_partition(db, table, list(values))
    if same_location(existing.sd.location, location) is False:
        raise PartitionLocationConflict(
            f"partition {db}.{table}/{partition_name(values)} is already registered at {existing.sd.location}, "
            f"not at {location}. Nothing was changed. To fix this, drop that partition if it is wrong "
            f"(ALTER TABLE {db}.{table} DROP PARTITION (...)), then re-run."
        )
    return False


def same_location(a: str, b: str) -> bool:
    """Do two locations name the same folder? The metastore stores ``file:///x`` as ``file:/x``."""
    def norm(loc: str) -> str:
        if loc.startswith("file:"):
            loc = "/" + loc[len("file:"):].lstrip("/")
        return loc.rstrip("/")

    return norm(a) == norm(b)


def partition_exists(client, db: str, table: str, values: Sequence[str]) -> bool:
    """What ``HiveMetastoreHook.check_for_named_partition`` answers: the partition is registered."""
    t = _ttypes()
    try:
        client.get_partition(db, table, list(values))
        return True
    except t.NoSuchObjectException:
        return False
