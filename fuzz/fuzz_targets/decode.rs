//! The transform's decode path on arbitrary bytes: never a panic, and every
//! input is accounted for, as a row or as a rejection with a reason. The
//! input is decoded alone and between two valid records, so a broken record
//! cannot take its neighbours down or run into them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtds::raw::decode::RawDecoder;

const VALID: &[u8] = br#"{"gender":"female","name":{"title":"Ms","first":"Ana","last":"Lima"},"location":{"street":{"number":1,"name":"Rua A"},"city":"Porto","state":"Porto","country":"Portugal","postcode":"4000-001","coordinates":{"latitude":"41.1","longitude":"-8.6"},"timezone":{"offset":"+0:00","description":"Lisbon"}},"email":"ana@example.com","login":{"uuid":"0b6d2f7e-5c1a-4b8e-9f3d-2a7c6e1d9b40","username":"ana"},"dob":{"date":"1990-02-28T23:59:59.999Z","age":36},"registered":{"date":"2015-06-01T00:00:00.000Z","age":11},"phone":"1","cell":"2","id":{"name":"","value":null},"picture":{"large":"l","medium":"m","thumbnail":"t"},"nat":"PT"}"#;

fuzz_target!(|data: &[u8]| {
    let decoder = RawDecoder::default();
    for batch in [&[Some(data)][..], &[Some(VALID), Some(data), Some(VALID)]] {
        let d = decoder.decode(batch).expect("a batch of what was read is always built");
        assert_eq!(d.rows.len() + d.rejected.len(), batch.len(), "an input went missing");
        assert_eq!(d.batch.num_rows(), d.rows.len());
        assert!(d.rejected.iter().all(|(_, why)| !why.is_empty()), "a rejection without a reason");
        if batch.len() == 3 {
            assert!(d.rows.contains(&0) && d.rows.contains(&2), "a broken record took a valid neighbour down");
        }
    }
});
