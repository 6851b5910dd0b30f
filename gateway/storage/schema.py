# -*- test-case-name: tests.gateway.test_store -*-
"""The database schema, as an ordered list of migrations tracked by ``PRAGMA user_version``.

Migration N brings a database at version N-1 to version N. A migration is never edited once
released; a change is a new migration appended to the list.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the embedded circulation system, resource-sharing requests, idempotency and the audit log.
    """
    CREATE TABLE records (
        id          INTEGER PRIMARY KEY,
        local_id    TEXT NOT NULL UNIQUE,          -- 001, or a generated id for brief records
        marc        BLOB NOT NULL,                 -- the raw ISO 2709 record, UTF-8
        title       TEXT NOT NULL DEFAULT '',
        author      TEXT NOT NULL DEFAULT '',
        subjects    TEXT NOT NULL DEFAULT '',      -- one per line
        publisher   TEXT NOT NULL DEFAULT '',
        pub_year    INTEGER,
        temporary   INTEGER NOT NULL DEFAULT 0,    -- brief record of a borrowed (temporary) item
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX records_title ON records(title COLLATE NOCASE);
    CREATE INDEX records_author ON records(author COLLATE NOCASE);
    CREATE INDEX records_year ON records(pub_year);

    -- Normalised identifiers: kind is one of isbn (both 10 and 13 forms), issn, oclc, local.
    CREATE TABLE record_identifiers (
        kind      TEXT NOT NULL,
        value     TEXT NOT NULL,
        record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
        PRIMARY KEY (kind, value, record_id)
    ) WITHOUT ROWID;
    CREATE INDEX record_identifiers_record ON record_identifiers(record_id);

    -- Word index; rowid = records.id. "anywords" holds searchable text outside the other columns.
    CREATE VIRTUAL TABLE records_fts USING fts5(
        title, author, subject, anywords,
        tokenize = 'unicode61 remove_diacritics 2'
    );

    CREATE TABLE items (
        id                INTEGER PRIMARY KEY,
        barcode           TEXT NOT NULL UNIQUE,
        record_id         INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
        location          TEXT NOT NULL DEFAULT '',  -- branch / holding library
        shelving_location TEXT NOT NULL DEFAULT '',
        call_number       TEXT NOT NULL DEFAULT '',
        copy_number       TEXT NOT NULL DEFAULT '',
        status            TEXT NOT NULL DEFAULT 'available'
                          CHECK (status IN ('available', 'on_loan', 'on_hold_shelf', 'in_transit',
                                            'missing', 'withdrawn')),
        temporary         INTEGER NOT NULL DEFAULT 0,
        owning_peer       TEXT,                      -- peer that lent us a temporary item
        loan_policy       TEXT NOT NULL DEFAULT 'standard',
        created_at        TEXT NOT NULL,
        updated_at        TEXT NOT NULL
    );
    CREATE INDEX items_record ON items(record_id);

    CREATE TABLE patrons (
        id            INTEGER PRIMARY KEY,
        barcode       TEXT NOT NULL UNIQUE,
        username      TEXT UNIQUE,
        pin_hash      TEXT,                          -- salted scrypt hash; never the PIN itself
        given_name    TEXT NOT NULL DEFAULT '',
        family_name   TEXT NOT NULL DEFAULT '',
        email         TEXT NOT NULL DEFAULT '',
        status        TEXT NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'blocked', 'expired')),
        patron_group  TEXT NOT NULL DEFAULT '',
        expires       TEXT,                          -- YYYY-MM-DD
        institutional_peer TEXT,                     -- set for a borrowing library's patron
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );

    CREATE TABLE holds (
        id               INTEGER PRIMARY KEY,
        patron_id        INTEGER NOT NULL REFERENCES patrons(id),
        record_id        INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
        item_id          INTEGER REFERENCES items(id) ON DELETE CASCADE,
        pickup_location  TEXT NOT NULL DEFAULT '',
        status           TEXT NOT NULL DEFAULT 'active'
                         CHECK (status IN ('active', 'fulfilled', 'cancelled', 'expired')),
        placed_at        TEXT NOT NULL,
        pickup_expires   TEXT,
        updated_at       TEXT NOT NULL
    );
    CREATE INDEX holds_item ON holds(item_id) WHERE status = 'active';
    CREATE INDEX holds_patron ON holds(patron_id);

    CREATE TABLE loans (
        id              INTEGER PRIMARY KEY,
        item_id         INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
        patron_id       INTEGER NOT NULL REFERENCES patrons(id),
        checked_out_at  TEXT NOT NULL,
        due_at          TEXT NOT NULL,
        returned_at     TEXT,
        renewals        INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX loans_open_item ON loans(item_id) WHERE returned_at IS NULL;
    CREATE INDEX loans_patron ON loans(patron_id);

    CREATE TABLE fees (
        id          INTEGER PRIMARY KEY,
        patron_id   INTEGER NOT NULL REFERENCES patrons(id),
        peer        TEXT,
        amount      TEXT NOT NULL,                   -- decimal as text, no float rounding
        currency    TEXT NOT NULL DEFAULT '',
        fee_type    TEXT NOT NULL DEFAULT '',
        item_id     INTEGER REFERENCES items(id) ON DELETE SET NULL,
        created_at  TEXT NOT NULL
    );

    -- One row per resource-sharing request, with the time of each step.
    CREATE TABLE rs_requests (
        id                 INTEGER PRIMARY KEY,
        peer               TEXT NOT NULL,
        role               TEXT NOT NULL CHECK (role IN ('borrower', 'lender')),
        broker_request_id  TEXT,
        our_request_id     TEXT NOT NULL UNIQUE,
        item_id            INTEGER REFERENCES items(id) ON DELETE SET NULL,
        item_barcode       TEXT,
        patron_id          INTEGER REFERENCES patrons(id),
        state              TEXT NOT NULL,
        requested_at       TEXT,
        accepted_at        TEXT,
        shipped_at         TEXT,
        received_at        TEXT,
        checked_out_at     TEXT,
        returned_at        TEXT,
        checked_in_at      TEXT,
        completed_at       TEXT,
        cancelled_at       TEXT,
        due_at             TEXT,
        renewable          INTEGER NOT NULL DEFAULT 1
    );
    CREATE UNIQUE INDEX rs_requests_broker ON rs_requests(peer, role, broker_request_id)
        WHERE broker_request_id IS NOT NULL;

    -- Exactly-once replies: the answer to each state-changing request, by its key.
    CREATE TABLE idempotency (
        peer        TEXT NOT NULL,
        service     TEXT NOT NULL,
        key         TEXT NOT NULL,
        response    BLOB NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (peer, service, key)
    ) WITHOUT ROWID;

    CREATE TABLE audit (
        id                 INTEGER PRIMARY KEY,
        time               TEXT NOT NULL,
        protocol           TEXT NOT NULL,             -- ncip | z3950
        peer               TEXT,
        remote             TEXT,
        operation          TEXT NOT NULL,
        dialect            TEXT,
        broker_request_id  TEXT,
        our_request_id     TEXT,
        item_barcode       TEXT,
        patron_hash        TEXT,
        outcome            TEXT NOT NULL,
        duration_us        INTEGER,
        request_size       INTEGER,
        response_size      INTEGER,
        request_body       TEXT,
        response_body      TEXT
    );
    CREATE INDEX audit_time ON audit(time);
    CREATE INDEX audit_peer_time ON audit(peer, time);
    CREATE INDEX audit_broker_request ON audit(broker_request_id);

    -- Secrets and settings the gateway generates for itself (e.g. the patron-hash key).
    CREATE TABLE gateway_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: catalogue search support: FTS vocabularies for Z39.50 Scan and truncation, and a small
    #    partial index of temporary (borrowed) records so they can be left out of scan counts.
    """
    CREATE VIRTUAL TABLE records_fts_vocab_col USING fts5vocab(records_fts, 'col');
    CREATE VIRTUAL TABLE records_fts_vocab_row USING fts5vocab(records_fts, 'row');
    CREATE INDEX records_temporary ON records(id) WHERE temporary = 1;
    """,
    # 3: a patron's active hold on a record is looked up on every hold placed (demo data, the
    #    lender's RequestItem): index it rather than scan the patron's history.
    """
    CREATE INDEX holds_patron_record_active ON holds(patron_id, record_id)
        WHERE status = 'active';
    """,
    # 4: the catalogue's generation, one more on every change to a record (and so to the word
    #    index, which is only ever written with its record): a word's hit count computed at one
    #    generation holds until the next, so a searcher may keep it
    #    (gateway.backends.embedded.search.WordCounts).
    #    Triggers, so that every writer (the daemon, `interlend import`) keeps it.
    """
    CREATE TABLE catalogue_generation (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    );
    INSERT INTO catalogue_generation (id, value) VALUES (1, 0);
    CREATE TRIGGER records_generation_insert AFTER INSERT ON records
        BEGIN UPDATE catalogue_generation SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER records_generation_update AFTER UPDATE ON records
        BEGIN UPDATE catalogue_generation SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER records_generation_delete AFTER DELETE ON records
        BEGIN UPDATE catalogue_generation SET value = value + 1 WHERE id = 1; END;
    """,
    # 5: temporary (borrowed) records leave the word index: no search ever shows them, and with
    #    thousands in flight subtracting them from every word count and scan cost O(their number).
    """
    DELETE FROM records_fts WHERE rowid IN (SELECT id FROM records WHERE temporary = 1);
    """,
    # 6: the broker's own names and request fingerprints (issue 13). A tracked request keeps the
    #    broker's ItemId (a temporary item answers to it whatever barcode we chose) and why it
    #    ended; one broker RequestId may name several volumes (one row per ItemId); a stored
    #    reply is keyed by the request's fingerprint, with its RequestId, item and a keyed hash of
    #    its user beside it, so that a different request reusing a RequestId is told apart from a
    #    retry (and a genuine conflict is found).
    """
    ALTER TABLE rs_requests ADD COLUMN broker_item_id TEXT;
    ALTER TABLE rs_requests ADD COLUMN end_reason TEXT;
    DROP INDEX rs_requests_broker;
    CREATE UNIQUE INDEX rs_requests_broker_item
        ON rs_requests(peer, role, broker_request_id, COALESCE(broker_item_id, ''))
        WHERE broker_request_id IS NOT NULL;
    CREATE INDEX rs_requests_item_name ON rs_requests(peer, broker_item_id)
        WHERE broker_item_id IS NOT NULL;
    ALTER TABLE idempotency ADD COLUMN request_key TEXT;
    ALTER TABLE idempotency ADD COLUMN item_key TEXT;
    ALTER TABLE idempotency ADD COLUMN user_key TEXT;
    CREATE INDEX idempotency_request ON idempotency(peer, request_key)
        WHERE request_key IS NOT NULL;
    """,
    # 7: audit notes: what the gateway repaired or flagged in a request before reading it (a body
    #    decoded with the peer's fallback charset, a stripped DOCTYPE...), comma-separated.
    """
    ALTER TABLE audit ADD COLUMN notes TEXT;
    """,
    # 8: PIN lock-out per patron, across peers and restarts: wrong PINs counted, locks kept here
    # (was in memory, per broker).
    """
    CREATE TABLE IF NOT EXISTS pin_failures (
        patron_id     INTEGER PRIMARY KEY REFERENCES patrons(id) ON DELETE CASCADE,
        failures      INTEGER NOT NULL DEFAULT 0,
        locked_until  REAL NOT NULL DEFAULT 0
    );
    """,
    # 9: one folding for every script (gateway.backends.embedded.indexing): the word index stores
    #    words folded in Python (NFKD, case folding, marks removed) and FTS5 only splits them on
    #    spaces ('ascii' tokenizer), so Cyrillic, Greek and compatibility characters match as their
    #    queries fold; added authors, variant and series titles get their own columns
    #    (1=1004/1005/1006, 1=5, 1=1018). The index is rebuilt from the stored records by the
    #    functions gateway.storage.store.migrate registers (interlend_index_words,
    #    interlend_index_identifiers), which also add the new identifier kinds (lccn from 010,
    #    language from 008/35-37); local numbers get a case-insensitive index (1=12 as Zebra
    #    compares them).
    """
    DROP TABLE IF EXISTS records_fts_vocab_col;
    DROP TABLE IF EXISTS records_fts_vocab_row;
    DROP TABLE records_fts;
    CREATE VIRTUAL TABLE records_fts USING fts5(
        title, author, subject, anywords, personal, corporate, conference, series, publisher,
        tokenize = 'ascii'
    );
    CREATE VIRTUAL TABLE records_fts_vocab_col USING fts5vocab(records_fts, 'col');
    CREATE VIRTUAL TABLE records_fts_vocab_row USING fts5vocab(records_fts, 'row');
    INSERT INTO records_fts (rowid, title, author, subject, anywords, personal, corporate,
                             conference, series, publisher)
        SELECT id, interlend_index_words(marc, 0), interlend_index_words(marc, 1),
               interlend_index_words(marc, 2), interlend_index_words(marc, 3),
               interlend_index_words(marc, 4), interlend_index_words(marc, 5),
               interlend_index_words(marc, 6), interlend_index_words(marc, 7),
               interlend_index_words(marc, 8)
        FROM records WHERE temporary = 0 ORDER BY id;
    INSERT OR IGNORE INTO record_identifiers (kind, value, record_id)
        SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), r.id
        FROM records r, json_each(interlend_index_identifiers(r.marc)) j;
    CREATE INDEX IF NOT EXISTS records_local_nocase ON records(local_id COLLATE NOCASE);
    """,
    # 10: OAI-PMH harvesting (issue 19). Every lendable record has a row in oai_records with
    #     its datestamp (UTC, 'YYYY-MM-DDTHH:MM:SSZ'), bumped by triggers whenever the record,
    #     one of its items (status, location, call number...), a loan or a hold on it changes,
    #     so an incremental harvest sees holdings and availability changes; a deleted record
    #     stays as a tombstone (deleted = 1, its locations kept for set membership), so the
    #     repository's deletedRecord policy is "persistent". Temporary (borrowed) records never
    #     get a row. Triggers, so every writer (the daemon, `interlend import`) keeps them.
    #     Keyset pagination reads (datestamp, record_id) in index order, never OFFSET.
    """
    CREATE TABLE oai_records (
        record_id  INTEGER PRIMARY KEY,              -- records.id (kept after deletion)
        local_id   TEXT NOT NULL,
        datestamp  TEXT NOT NULL,
        kind       TEXT NOT NULL DEFAULT '',         -- leader/06-07 (type, bibliographic level)
        deleted    INTEGER NOT NULL DEFAULT 0,
        locations  TEXT                              -- a tombstone's item locations, one a line
    );
    CREATE INDEX oai_records_datestamp ON oai_records(datestamp, record_id);
    INSERT INTO oai_records (record_id, local_id, datestamp, kind)
        SELECT r.id, r.local_id,
               max(substr(r.updated_at, 1, 19),
                   coalesce((SELECT max(substr(i.updated_at, 1, 19)) FROM items i
                             WHERE i.record_id = r.id), '')) || 'Z',
               CAST(substr(r.marc, 7, 2) AS TEXT)
        FROM records r WHERE r.temporary = 0;
    CREATE TRIGGER oai_record_insert AFTER INSERT ON records WHEN NEW.temporary = 0 BEGIN
        INSERT OR REPLACE INTO oai_records (record_id, local_id, datestamp, kind)
        VALUES (NEW.id, NEW.local_id, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'),
                CAST(substr(NEW.marc, 7, 2) AS TEXT));
    END;
    CREATE TRIGGER oai_record_update
    AFTER UPDATE OF marc, local_id, temporary ON records
    WHEN OLD.marc IS NOT NEW.marc OR OLD.local_id IS NOT NEW.local_id
         OR OLD.temporary IS NOT NEW.temporary BEGIN  -- re-importing the same record: no change
        DELETE FROM oai_records WHERE record_id = NEW.id AND NEW.temporary = 1;
        INSERT OR REPLACE INTO oai_records (record_id, local_id, datestamp, kind)
        SELECT NEW.id, NEW.local_id, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'),
               CAST(substr(NEW.marc, 7, 2) AS TEXT)
        WHERE NEW.temporary = 0;
    END;
    CREATE TRIGGER oai_record_delete BEFORE DELETE ON records WHEN OLD.temporary = 0 BEGIN
        UPDATE oai_records SET deleted = 1, datestamp = strftime('%Y-%m-%dT%H:%M:%SZ', 'now'),
            locations = (SELECT group_concat(location, char(10)) FROM
                         (SELECT DISTINCT location FROM items
                          WHERE record_id = OLD.id AND temporary = 0 AND location != ''))
        WHERE record_id = OLD.id;
    END;
    CREATE TRIGGER oai_item_insert AFTER INSERT ON items BEGIN
        UPDATE oai_records SET datestamp = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
        WHERE record_id = NEW.record_id AND deleted = 0;
    END;
    CREATE TRIGGER oai_item_update
    AFTER UPDATE OF record_id, location, shelving_location, call_number, copy_number, status,
                    loan_policy ON items
    WHEN OLD.record_id IS NOT NEW.record_id OR OLD.location IS NOT NEW.location
         OR OLD.shelving_location IS NOT NEW.shelving_location
         OR OLD.call_number IS NOT NEW.call_number OR OLD.copy_number IS NOT NEW.copy_number
         OR OLD.status IS NOT NEW.status OR OLD.loan_policy IS NOT NEW.loan_policy BEGIN
        UPDATE oai_records SET datestamp = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
        WHERE record_id IN (OLD.record_id, NEW.record_id) AND deleted = 0;
    END;
    CREATE TRIGGER oai_item_delete AFTER DELETE ON items BEGIN
        UPDATE oai_records SET datestamp = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
        WHERE record_id = OLD.record_id AND deleted = 0;
    END;
    CREATE TRIGGER oai_loan_insert AFTER INSERT ON loans BEGIN
        UPDATE oai_records SET datestamp = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
        WHERE record_id = (SELECT record_id FROM items WHERE id = NEW.item_id) AND deleted = 0;
    END;
    CREATE TRIGGER oai_loan_update AFTER UPDATE OF returned_at, due_at ON loans
    WHEN OLD.returned_at IS NOT NEW.returned_at OR OLD.due_at IS NOT NEW.due_at BEGIN
        UPDATE oai_records SET datestamp = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
        WHERE record_id = (SELECT record_id FROM items WHERE id = NEW.item_id) AND deleted = 0;
    END;
    CREATE TRIGGER oai_hold_insert AFTER INSERT ON holds BEGIN
        UPDATE oai_records SET datestamp = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
        WHERE record_id = NEW.record_id AND deleted = 0;
    END;
    CREATE TRIGGER oai_hold_update AFTER UPDATE OF status ON holds
    WHEN OLD.status IS NOT NEW.status BEGIN
        UPDATE oai_records SET datestamp = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
        WHERE record_id = NEW.record_id AND deleted = 0;
    END;
    """,
    # 11: upstream NCIP (issue 18): what a local item, hold or loan is in the library's own LMS
    #     (its barcode there, the RequestId it gave a hold), written with the unit of work that
    #     mirrored it.
    """
    CREATE TABLE upstream_links (
        kind        TEXT NOT NULL CHECK (kind IN ('item', 'hold')),
        local_id    INTEGER NOT NULL,
        upstream_id TEXT NOT NULL,
        unit        TEXT NOT NULL DEFAULT '',   -- the broker request (outbox unit) that made it
        created_at  TEXT NOT NULL,
        PRIMARY KEY (kind, local_id)
    ) WITHOUT ROWID;
    CREATE INDEX upstream_links_upstream ON upstream_links(kind, upstream_id);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
