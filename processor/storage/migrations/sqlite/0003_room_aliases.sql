-- Room aliases for the query API (`roomserver serve`: /alias/...): which room an alias
-- names and the user who created it (answered by /alias/creator).
CREATE TABLE room_aliases (
    alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX room_aliases_by_room ON room_aliases (room_id);

-- Pending invites of any user are the rows of `memberships` with membership 'invite'.
CREATE INDEX memberships_invites_by_target ON memberships (target_nid) WHERE membership = 'invite';
