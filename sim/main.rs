#![cfg(madsim)]
#[madsim::test]
async fn smoke() {}
