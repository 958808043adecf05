//! webui
