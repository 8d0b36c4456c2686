-- Room on each page for updates that change no indexed column, so PostgreSQL can make them
-- heap-only (HOT: the new row version goes on the same page and no index entry is written):
-- the outbox claim on `messages` (lease and attempt count) and the lead update that only moves
-- engagement counters. Applies to pages written from now on.
ALTER TABLE messages SET (fillfactor = 90);
ALTER TABLE leads SET (fillfactor = 70);
