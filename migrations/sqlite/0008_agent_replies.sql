-- What the agents add to a bot reply (which agent answered, the confidence factors and the passages
-- it rests on), and the language-model tokens each tenant used, per day and purpose.

ALTER TABLE messages ADD COLUMN agent TEXT;
-- JSON: {"classifier","retrieval","grounded","confidence"}
ALTER TABLE messages ADD COLUMN confidence_factors TEXT;
-- JSON array of {"id","document","section"}
ALTER TABLE messages ADD COLUMN sources TEXT;

CREATE TABLE llm_usage (
    tenant_id          TEXT NOT NULL,
    day                TEXT NOT NULL,
    purpose            TEXT NOT NULL,
    calls              BIGINT NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, purpose)
);
