-- +goose Up

-- Customers: what triggers communication, not everything billing knows.
CREATE TABLE customers (
    id                text PRIMARY KEY,                  -- customer number (Kundennummer)
    salutation        text NOT NULL DEFAULT '',          -- 'Frau', 'Herr', '' (neutral)
    first_name        text NOT NULL DEFAULT '',
    last_name         text NOT NULL DEFAULT '',
    birthday          date,
    language          text NOT NULL DEFAULT 'de',
    email             text,                              -- NULL: no address
    mobile            text,                              -- E.164, NULL: no number
    street            text NOT NULL DEFAULT '',
    postcode          text NOT NULL DEFAULT '',
    city              text NOT NULL DEFAULT '',
    in_supply_area    boolean NOT NULL DEFAULT true,     -- inside the Netzgebiet
    preferred_channel text CHECK (preferred_channel IN ('email', 'sms', 'whatsapp')),
    churn_index       real CHECK (churn_index BETWEEN 0 AND 1),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contracts (
    id                      text PRIMARY KEY,            -- contract number
    customer_id             text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    product                 text NOT NULL CHECK (product IN ('strom', 'gas', 'wasser', 'waerme')),
    tariff                  text NOT NULL,
    basic_supply            boolean NOT NULL DEFAULT false, -- Grundversorgung
    starts_on               date NOT NULL,
    ends_on                 date,
    notice_period_days      integer NOT NULL DEFAULT 30 CHECK (notice_period_days >= 0),
    monthly_installment_eur numeric(10, 2)
);
CREATE INDEX contracts_customer_idx ON contracts (customer_id);

-- Interests rise with city-card use, surveys and agents' notes.
CREATE TABLE interests (
    customer_id text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    topic       text NOT NULL,                           -- 'pool', 'parking', 'transit', 'museum', …
    strength    real NOT NULL DEFAULT 0.5 CHECK (strength BETWEEN 0 AND 1),
    source      text NOT NULL,                           -- 'citycard', 'survey', 'agent'
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, topic)
);

-- Consent ledger: append-only; the current state is the newest statement
-- (by recorded_at, then by id) per customer × channel × purpose.
CREATE TABLE consents (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp', 'letter', 'phone')),
    purpose     text NOT NULL CHECK (purpose IN ('marketing')),
    granted     boolean NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    touchpoint  text NOT NULL,                           -- 'web', 'service_center', 'sms', 'api', …
    evidence    jsonb NOT NULL DEFAULT '{}'              -- wording version, DOI times, agent id
);
CREATE INDEX consents_current_idx ON consents (customer_id, channel, purpose, recorded_at DESC, id DESC);

-- +goose StatementBegin
CREATE FUNCTION consents_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consents is an append-only ledger: % is not allowed', TG_OP;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
    FOR EACH ROW EXECUTE FUNCTION consents_append_only();

-- Events seen: exactly one row per accepted event, written with its outcome.
CREATE TABLE events (
    id           text PRIMARY KEY,                       -- CloudEvents id (idempotency key)
    type         text NOT NULL,
    source       text NOT NULL,
    subject      text NOT NULL,                          -- customer number
    occurred_at  timestamptz,                            -- CloudEvents time
    stored_at    timestamptz NOT NULL,                   -- when JetStream stored it
    processed_at timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL CHECK (outcome IN ('processed', 'no_campaign', 'dead_letter')),
    detail       text NOT NULL DEFAULT '',
    data         jsonb COMPRESSION lz4
);

-- Decisions: one per event × campaign × customer, sent or not, with the reason.
-- The id is derived from exactly that triple (UUIDv5), so the primary key is
-- the unique key that makes a redelivered event decide nothing twice.
CREATE TABLE decisions (
    id               uuid PRIMARY KEY,
    event_id         text NOT NULL,
    campaign_id      text NOT NULL,
    campaign_version integer NOT NULL,
    customer_id      text NOT NULL,
    purpose          text NOT NULL CHECK (purpose IN ('marketing', 'service', 'legal')),
    send             boolean NOT NULL,
    channel          text,
    legal_basis      text CHECK (legal_basis IN ('consent', 'contract', 'legal_obligation')),
    consent_id       bigint REFERENCES consents (id) ON DELETE SET NULL,
    reason           text NOT NULL,
    decided_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_customer_idx ON decisions (customer_id, decided_at DESC);

-- Messages: what a decision sends, one per channel, immutable once written.
-- A message without a dispatch row is being handed to the provider.
CREATE TABLE messages (
    id          uuid PRIMARY KEY,                        -- UUIDv5 of decision × channel
    decision_id uuid NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp')),
    address     text NOT NULL,
    subject     text NOT NULL DEFAULT '',
    body_text   text COMPRESSION lz4 NOT NULL,           -- lz4: far cheaper than pglz for
    body_html   text COMPRESSION lz4 NOT NULL DEFAULT '', -- the bodies written at full speed
    created_at  timestamptz NOT NULL
);
CREATE INDEX messages_decision_idx ON messages (decision_id);

-- Dispatches: the outcome of handing a message to its provider, at most one
-- per message (the primary key makes a second outcome impossible).
CREATE TABLE dispatches (
    message_id    uuid PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    status        text NOT NULL CHECK (status IN ('sent', 'failed', 'interrupted')),
    provider_id   text,
    segments      integer,
    attempts      integer NOT NULL DEFAULT 1,
    error         text,
    dispatched_at timestamptz,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE dispatches;
DROP TABLE messages;
DROP TABLE decisions;
DROP TABLE events;
DROP TABLE consents;
DROP FUNCTION consents_append_only;
DROP TABLE interests;
DROP TABLE contracts;
DROP TABLE customers;
