-- make bench's aggregate step (issue 40): 1-minute windows over 168 groups
-- (nationality, gender and decade of age), as a dashboard of sign-ups would count them.
SELECT tumble(interval '1 minute') AS window, nat, gender, dob['age'] / 10 AS decade,
       count(*) AS signups, avg(dob['age']) AS mean_age, approx_distinct(location['city']) AS cities
FROM users_raw
GROUP BY window, nat, gender, decade
