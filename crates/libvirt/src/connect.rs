//! Opening the connection, as virsh does: `-c URI`, else `$LIBVIRT_DEFAULT_URI`, else libvirt's
//! own default (libvirt reads the variable itself when given no URI).

use anyhow::Context;
use virt::connect::Connect;

/// Opens a read-write connection to `uri` (None: libvirt's default).
pub fn open(uri: Option<&str>) -> anyhow::Result<Connect> {
    Connect::open(uri).with_context(|| {
        format!(
            "cannot connect to libvirt at {}",
            uri.map_or_else(|| "the default URI".to_owned(), |u| format!("'{u}'"))
        )
    })
}
