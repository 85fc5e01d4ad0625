-- The classic tutorial's format_data, as DataFusion SQL over one batch of raw
-- randomuser records (table users_raw). Output: the users_created contract of
-- docs/ARCHITECTURE.md ("Data contract"). Text fields are copied exactly as
-- the API sent them; parts of the address that are missing are left out
-- rather than leaving empty commas.
SELECT
    login['uuid']                       AS id,
    name['first']                       AS first_name,
    name['last']                        AS last_name,
    gender                              AS gender,
    concat_ws(', ',
        nullif(concat_ws(' ', location['street']['number'], location['street']['name']), ''),
        location['city'],
        location['state'],
        location['country'])            AS address,
    location['postcode']                AS post_code,
    email                               AS email,
    login['username']                   AS username,
    dob['date']                         AS dob,
    registered['date']                  AS registered_date,
    phone                               AS phone,
    picture['medium']                   AS picture
FROM users_raw
