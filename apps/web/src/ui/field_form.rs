//! A form of one text field and a button: the name form and the join form are both one.

// `#[component]` generates a `pub` props type for each component.
#![allow(unreachable_pub)]

use leptos::prelude::*;

/// One text field (`#{id}-input`) and a submit button (`#{id}-submit`). On submit the trimmed
/// text goes to `submit`; an error it returns is shown under the field (as an alert), and on
/// success the field is cleared.
#[component]
pub(super) fn FieldForm(
    /// Prefix of the field's and the button's element ids.
    id: &'static str,
    /// What the field is for: a visible label, or only its accessible name when there is a
    /// `placeholder`.
    label: &'static str,
    /// Text shown in the empty field, in place of a visible label.
    #[prop(optional)]
    placeholder: Option<&'static str>,
    /// The browser's autofill hint for the field.
    #[prop(optional)]
    autocomplete: Option<&'static str>,
    /// Longest text the field takes, in characters.
    maxlength: usize,
    /// The button's text.
    button: &'static str,
    /// The form's class, for styling.
    #[prop(optional)]
    class: Option<&'static str>,
    /// Takes the trimmed text; an error is shown to the user.
    submit: impl Fn(String) -> Result<(), String> + 'static,
) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match submit(text.get_untracked().trim().to_owned()) {
            Ok(()) => {
                error.set(None);
                text.set(String::new());
            }
            Err(e) => error.set(Some(e)),
        }
    };
    let input_id = format!("{id}-input");
    let visible_label = placeholder
        .is_none()
        .then(|| view! { <label for=input_id.clone()>{label}</label> });
    view! {
        <form class=class on:submit=on_submit>
            {visible_label}
            <input
                id=input_id
                aria-label=placeholder.map(|_| label)
                placeholder=placeholder
                autocomplete=autocomplete
                maxlength=maxlength.to_string()
                prop:value=move || text.get()
                on:input=move |ev| text.set(event_target_value(&ev))
            />
            <button id=format!("{id}-submit") type="submit">{button}</button>
            <p class="error" role="alert">{move || error.get()}</p>
        </form>
    }
}
