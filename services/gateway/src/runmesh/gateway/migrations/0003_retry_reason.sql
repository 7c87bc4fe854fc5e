-- Why the latest attempt started (issue 19, item 5): null for a first attempt; 'worker lost'
-- when a later attempt started while the one before had not ended (its worker died or left
-- the group mid-run, and the request was delivered again).
ALTER TABLE runs.runs ADD COLUMN IF NOT EXISTS retry_reason text;
