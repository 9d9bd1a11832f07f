"""astrocore: the Streamlit entry point (home page and navigation)."""
import streamlit as st

st.set_page_config(page_title="astrocore", page_icon="✨", layout="wide")


def home() -> None:
    st.title("astrocore")
    st.write(
        "An interactive lab for representation-learning models on stellar spectra, emission-line "
        "catalogues and multi-band image cutouts."
    )


st.navigation([st.Page(home, title="Home", default=True)]).run()
