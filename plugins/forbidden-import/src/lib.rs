//! `forbidden-import` (hostile, for loader tests): a component that imports
//! an interface Sluice does not grant (`evil:net/fetch`). The host must refuse
//! it at upload with a message naming that import.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        inline: r#"
            package evil:net;
            interface fetch {
                get: func(url: string) -> string;
            }
            world forbidden {
                import fetch;
                export init: func(config: string) -> result<_, string>;
            }
        "#,
    });

    struct Forbidden;

    impl Guest for Forbidden {
        fn init(config: String) -> Result<(), String> {
            let _ = evil::net::fetch::get(&config);
            Ok(())
        }
    }

    export!(Forbidden);
}
