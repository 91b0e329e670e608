-- Dead letters replayed by `oee deadletters replay` (docs/decisions/0022): one row per dead letter, claimed
-- before the copy is sent and completed with where it landed, so a dead letter is replayed at most once.
-- A claim whose answer was lost stays `sending`; the next replay looks the copy up in the target partition
-- (from `target_from`, by its `dlq.replay.of` header) instead of sending it again.

CREATE TABLE IF NOT EXISTS dead_letter_replays (
    source            text        NOT NULL,   -- 'router' (the dead-letter topic) or 'projector:<schema>'
    topic             text        NOT NULL,   -- where the dead letter is: the dead-letter topic, or the log
    partition         integer     NOT NULL,
    "offset"          bigint      NOT NULL,
    id                text        NOT NULL,   -- as `oee deadletters` names it: router/P/O, projector/P/O
    state             text        NOT NULL CHECK (state IN ('sending', 'replayed')),
    target_topic      text        NOT NULL,   -- where the copy goes: the topic the dead letter came from
    target_partition  integer     NOT NULL,
    target_from       bigint      NOT NULL,   -- that partition's end when claimed: a lost answer is looked up from here
    target_offset     bigint,                 -- where the copy landed (NULL while sending)
    claimed_at        timestamptz NOT NULL DEFAULT now(),
    replayed_at       timestamptz,
    claimed_by        text        NOT NULL,   -- user@host of the operator
    PRIMARY KEY (source, topic, partition, "offset")
);
CREATE INDEX IF NOT EXISTS dead_letter_replays_target
    ON dead_letter_replays (target_topic, target_partition, target_offset);
