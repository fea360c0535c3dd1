-- Room aliases for the query API (`roomserver serve`: /alias/...): which room an alias
-- names and the user who created it (answered by /alias/creator, so the client service can
-- let creators remove their aliases).
CREATE TABLE room_aliases (
    alias text PRIMARY KEY,
    room_id text NOT NULL,
    creator text NOT NULL
);
CREATE INDEX room_aliases_by_room ON room_aliases (room_id);

-- Pending invites of any user (not only local ones, which `invites` holds) are the rows of
-- `memberships` with membership 'invite': found by target without scanning every room.
CREATE INDEX memberships_invites_by_target ON memberships (target_nid) WHERE membership = 'invite';
