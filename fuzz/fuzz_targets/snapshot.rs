#![no_main]

use libfuzzer_sys::fuzz_target;

/// Hand vekter the API routines of the SQLite library linked here (sqlite3ext-sys's copy).
fn init_sqlite() {
    type Entry = unsafe extern "C" fn(
        *mut sqlite3ext_sys::sqlite3,
        *mut *mut std::os::raw::c_char,
        *const sqlite3ext_sys::sqlite3_api_routines,
    ) -> std::os::raw::c_int;
    // SAFETY: SQLite calls auto extensions with exactly these arguments; the connection is
    // opened and closed here only to trigger the call.
    unsafe {
        let entry: Entry = vekter::fuzzing::capture_api;
        sqlite3ext_sys::sqlite3_auto_extension(Some(std::mem::transmute::<
            Entry,
            unsafe extern "C" fn(),
        >(entry)));
        let mut db = std::ptr::null_mut();
        let rc = sqlite3ext_sys::sqlite3_open_v2(
            c":memory:".as_ptr(),
            &mut db,
            0x02 | 0x04,
            std::ptr::null(),
        );
        assert_eq!(rc, 0, "cannot open SQLite");
        sqlite3ext_sys::sqlite3_close(db);
        sqlite3ext_sys::sqlite3_reset_auto_extension();
    }
}

fuzz_target!(init: init_sqlite(), |data: &[u8]| vekter::fuzzing::snapshot(data));
