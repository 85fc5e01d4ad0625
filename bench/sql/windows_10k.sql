-- make bench's aggregate step: the state of ~10,000 groups (the first two hex digits
-- of the user's id, nationality and gender: 256 x 20 x 2) in a 1-minute window.
SELECT tumble(interval '1 minute') AS window, substr(login['uuid'], 1, 2) AS prefix, nat, gender,
       count(*) AS signups, avg(dob['age']) AS mean_age
FROM users_raw
GROUP BY window, prefix, nat, gender
