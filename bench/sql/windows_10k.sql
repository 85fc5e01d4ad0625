-- make bench's aggregate step: the state of 10,000 groups in a 1-minute window (the users whose
-- id starts with 0000 to 270f: 10,000 prefixes, every one of them in a million users).
SELECT tumble(interval '1 minute') AS window, substr(login['uuid'], 1, 4) AS prefix,
       count(*) AS signups, avg(dob['age']) AS mean_age
FROM users_raw
WHERE substr(login['uuid'], 1, 4) < '2710'
GROUP BY window, prefix
