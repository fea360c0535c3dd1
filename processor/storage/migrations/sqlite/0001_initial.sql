-- roomserver schema v1 (SQLite): the same tables as the PostgreSQL schema (see its comments).
-- Arrays of NIDs (forward extremities, auth/prev events, a snapshot's blocks) are BLOBs of
-- little-endian int64s. NIDs handed out before their row is written come from nid_counters.

CREATE TABLE nid_counters (
    kind TEXT PRIMARY KEY,
    next_nid INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO nid_counters (kind, next_nid) VALUES
    ('event', 1), ('state_block', 1), ('state_snapshot', 1),
    ('event_types', 1024), ('state_keys', 1024);

CREATE TABLE event_types (
    event_type_nid INTEGER PRIMARY KEY CHECK (event_type_nid > 0),
    event_type TEXT NOT NULL UNIQUE
);

CREATE TABLE state_keys (
    state_key_nid INTEGER PRIMARY KEY CHECK (state_key_nid > 0),
    state_key TEXT NOT NULL UNIQUE
);

CREATE TABLE rooms (
    room_nid INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT NOT NULL UNIQUE,
    room_version TEXT NOT NULL,
    forward_extremities BLOB NOT NULL DEFAULT x'',
    current_snapshot_nid INTEGER NOT NULL DEFAULT 0,
    last_stream_position INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE events (
    event_nid INTEGER PRIMARY KEY,
    room_nid INTEGER NOT NULL,
    event_type_nid INTEGER NOT NULL,
    state_key_nid INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    outlier INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    redacted INTEGER NOT NULL,
    state_snapshot_nid INTEGER NOT NULL,
    auth_event_nids BLOB NOT NULL,
    prev_event_nids BLOB NOT NULL,
    rejection_reason TEXT,
    event_id TEXT NOT NULL UNIQUE
);

CREATE TABLE event_json (
    event_nid INTEGER PRIMARY KEY,
    json BLOB NOT NULL
);

CREATE TABLE state_blocks (
    state_block_nid INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    entry_count INTEGER NOT NULL,
    data BLOB NOT NULL
);

CREATE TABLE state_snapshots (
    state_snapshot_nid INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    room_nid INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    chunk_level INTEGER NOT NULL,
    block_nids BLOB NOT NULL CHECK (length(block_nids) <= 512)
);

CREATE TABLE memberships (
    room_nid INTEGER NOT NULL,
    target_nid INTEGER NOT NULL,
    membership TEXT NOT NULL,
    event_nid INTEGER NOT NULL,
    PRIMARY KEY (room_nid, target_nid)
) WITHOUT ROWID;

CREATE TABLE invites (
    event_nid INTEGER PRIMARY KEY,
    room_nid INTEGER NOT NULL,
    target_user_id TEXT NOT NULL,
    retired INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX invites_active_by_target ON invites (target_user_id, room_nid) WHERE NOT retired;

CREATE TABLE redactions (
    redaction_event_nid INTEGER PRIMARY KEY,
    redacts_event_id TEXT NOT NULL,
    validated INTEGER NOT NULL
);
CREATE INDEX redactions_by_target ON redactions (redacts_event_id);

CREATE TABLE input_offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;

CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    partition INTEGER NOT NULL,
    room_id TEXT NOT NULL,
    stream_position INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX outbox_by_partition ON outbox (partition, seq);
