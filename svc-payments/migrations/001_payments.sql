-- svc-payments schema: payments, their status events, idempotency keys, webhook event ids.
-- Every rule the API enforces is also a constraint here, so no code path can store what the
-- API would refuse.

-- ISO 4217 currency codes accepted for payments (the same list as svc-payments/currency.c;
-- tests/unit/test_payments.c checks that both agree).
CREATE TABLE currencies (
    code char(3) PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$')
);
INSERT INTO currencies (code) VALUES
    ('AED'), ('AFN'), ('ALL'), ('AMD'), ('ANG'), ('AOA'), ('ARS'), ('AUD'), ('AWG'), ('AZN'),
    ('BAM'), ('BBD'), ('BDT'), ('BGN'), ('BHD'), ('BIF'), ('BMD'), ('BND'), ('BOB'), ('BOV'),
    ('BRL'), ('BSD'), ('BTN'), ('BWP'), ('BYN'), ('BZD'), ('CAD'), ('CDF'), ('CHE'), ('CHF'),
    ('CHW'), ('CLF'), ('CLP'), ('CNY'), ('COP'), ('COU'), ('CRC'), ('CUC'), ('CUP'), ('CVE'),
    ('CZK'), ('DJF'), ('DKK'), ('DOP'), ('DZD'), ('EGP'), ('ERN'), ('ETB'), ('EUR'), ('FJD'),
    ('FKP'), ('GBP'), ('GEL'), ('GHS'), ('GIP'), ('GMD'), ('GNF'), ('GTQ'), ('GYD'), ('HKD'),
    ('HNL'), ('HTG'), ('HUF'), ('IDR'), ('ILS'), ('INR'), ('IQD'), ('IRR'), ('ISK'), ('JMD'),
    ('JOD'), ('JPY'), ('KES'), ('KGS'), ('KHR'), ('KMF'), ('KPW'), ('KRW'), ('KWD'), ('KYD'),
    ('KZT'), ('LAK'), ('LBP'), ('LKR'), ('LRD'), ('LSL'), ('LYD'), ('MAD'), ('MDL'), ('MGA'),
    ('MKD'), ('MMK'), ('MNT'), ('MOP'), ('MRU'), ('MUR'), ('MVR'), ('MWK'), ('MXN'), ('MXV'),
    ('MYR'), ('MZN'), ('NAD'), ('NGN'), ('NIO'), ('NOK'), ('NPR'), ('NZD'), ('OMR'), ('PAB'),
    ('PEN'), ('PGK'), ('PHP'), ('PKR'), ('PLN'), ('PYG'), ('QAR'), ('RON'), ('RSD'), ('RUB'),
    ('RWF'), ('SAR'), ('SBD'), ('SCR'), ('SDG'), ('SEK'), ('SGD'), ('SHP'), ('SLE'), ('SLL'),
    ('SOS'), ('SRD'), ('SSP'), ('STN'), ('SVC'), ('SYP'), ('SZL'), ('THB'), ('TJS'), ('TMT'),
    ('TND'), ('TOP'), ('TRY'), ('TTD'), ('TWD'), ('TZS'), ('UAH'), ('UGX'), ('USD'), ('USN'),
    ('UYI'), ('UYU'), ('UYW'), ('UZS'), ('VED'), ('VES'), ('VND'), ('VUV'), ('WST'), ('XAF'),
    ('XCD'), ('XCG'), ('XOF'), ('XPF'), ('YER'), ('ZAR'), ('ZMW'), ('ZWG'), ('ZWL');

-- Metadata: a flat JSON object of at most 50 keys, keys 1..40 characters, string values of
-- at most 500 characters, and at most 8192 bytes of keys and values together (UTF-8).
CREATE FUNCTION payments_metadata_ok(m jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT jsonb_typeof(m) = 'object'
       AND (SELECT count(*) FROM jsonb_each(m)) <= 50
       AND NOT EXISTS (SELECT 1 FROM jsonb_each(m) e
                        WHERE jsonb_typeof(e.value) <> 'string'
                           OR char_length(e.key) NOT BETWEEN 1 AND 40
                           OR char_length(e.value #>> '{}') > 500)
       AND (SELECT coalesce(sum(octet_length(e.key) + octet_length(e.value #>> '{}')), 0)
              FROM jsonb_each(m) e) <= 8192
$$;

CREATE TABLE payments (
    id          bigserial PRIMARY KEY,
    reference   text NOT NULL UNIQUE CHECK (reference ~ '^pay_[0-9A-Za-z]{24}$'),
    user_id     text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 200),
    org_id      text NOT NULL CHECK (char_length(org_id) BETWEEN 1 AND 200),
    amount      bigint NOT NULL CHECK (amount BETWEEN 1 AND 99999999),
    currency    char(3) NOT NULL REFERENCES currencies (code),
    description text CHECK (char_length(description) <= 1000),
    metadata    jsonb NOT NULL DEFAULT '{}' CHECK (payments_metadata_ok(metadata)),
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'processing', 'succeeded', 'failed', 'cancelled',
                                  'refunded')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (updated_at >= created_at)
);
CREATE INDEX payments_user_idx ON payments (user_id, id DESC);
CREATE INDEX payments_org_idx ON payments (org_id, id DESC);

-- The state machine (svc-payments/state.c) enforced by the database as well: a payment is
-- created pending, and only these moves are stored.
CREATE FUNCTION payments_status_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' THEN
            RAISE EXCEPTION 'a payment is created pending, not %', NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
    ELSIF NEW.status IS DISTINCT FROM OLD.status AND NOT (
           (OLD.status = 'pending' AND NEW.status IN ('processing', 'cancelled', 'failed'))
        OR (OLD.status = 'processing' AND NEW.status IN ('succeeded', 'failed'))
        OR (OLD.status = 'succeeded' AND NEW.status = 'refunded')) THEN
        RAISE EXCEPTION 'invalid transition % -> %', OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER payments_status_guard BEFORE INSERT OR UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION payments_status_guard();

CREATE TABLE payment_events (
    id         bigserial PRIMARY KEY,
    payment_id bigint NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    status     text NOT NULL
               CHECK (status IN ('processing', 'succeeded', 'failed', 'cancelled', 'refunded')),
    reason     text CHECK (char_length(reason) <= 500),
    source     text NOT NULL CHECK (source IN ('api', 'webhook')),
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX payment_events_payment_idx ON payment_events (payment_id, id);

-- Idempotency keys, per user. In flight while response_status is NULL; an in-flight key
-- whose locked_until has passed (its instance crashed) may be taken over by the same request.
CREATE TABLE idempotency_keys (
    user_id         text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 200),
    key             text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    fingerprint     bytea NOT NULL CHECK (octet_length(fingerprint) = 32),
    lock_id         text NOT NULL,
    locked_until    timestamptz NOT NULL,
    response_status int CHECK (response_status BETWEEN 200 AND 599),
    response_body   text,
    payment_id      bigint REFERENCES payments (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, key),
    CHECK ((response_status IS NULL) = (response_body IS NULL)),
    CHECK (expires_at > created_at)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- Webhook event ids seen, so a replayed event is acknowledged without effect.
CREATE TABLE webhook_events (
    event_id    text PRIMARY KEY CHECK (char_length(event_id) BETWEEN 1 AND 255),
    type        text NOT NULL CHECK (type IN ('payment.processing', 'payment.succeeded',
                                              'payment.failed', 'payment.refunded')),
    payment_id  bigint NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    received_at timestamptz NOT NULL DEFAULT now()
);
