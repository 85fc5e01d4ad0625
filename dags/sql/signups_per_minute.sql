-- Sign-ups per nationality per minute of ingest time: the dashboard's first query
-- (rtds aggregate; the signups_per_minute DAG, make demo, the README).
SELECT tumble(interval '1 minute') AS window, nat, count(*) AS signups, avg(dob['age']) AS mean_age
FROM users_raw
GROUP BY window, nat
