-- The final status a provider's API confirmed before it was recorded (issue 30's second
-- witness); NULL where nothing was confirmed. The read API says `verified: signature+api` when it
-- equals the process's status.
ALTER TABLE signing_processes ADD COLUMN api_confirmed TEXT;
