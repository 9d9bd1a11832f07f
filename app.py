"""astrocore: the Streamlit entry point (home page, navigation and the sidebar)."""
from pathlib import Path

import streamlit as st

from astrocore.app import common as app_common
from astrocore.runs import runs_dir

st.set_page_config(page_title="astrocore", page_icon="✨", layout="wide")

ASSETS = Path(__file__).resolve().parent / "assets"

spectra_page = st.Page("pages/spectra.py", title="Spectra", icon=":material/stacked_line_chart:",
                       url_path="spectra")
runs_page = st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:", url_path="runs")
explore_page = st.Page("pages/explore.py", title="Embedding explorer", icon=":material/scatter_plot:",
                       url_path="explore")
# The newer methods' pages join the navigation as their files land.
METHOD_PAGES = [
    ("pages/multimodal.py", "Multimodal BHB", ":material/join_inner:", "multimodal"),
    ("pages/nebulae.py", "Nebulae (DANN)", ":material/blur_on:", "nebulae"),
    ("pages/images.py", "Self-supervised images", ":material/image:", "images"),
]
method_pages = [st.Page(path, title=title, icon=icon, url_path=url) for path, title, icon, url in METHOD_PAGES
                if (Path(__file__).resolve().parent / path).exists()]


@st.cache_resource(show_spinner=False)
def device() -> str:
    return app_common.device_description()


def home() -> None:
    st.title("astrocore")
    st.markdown(
        "An interactive lab for representation learning on stellar spectra, emission-line catalogues and "
        "multi-band cutouts. Everything runs on this machine with built-in, physically shaped simulators "
        "(no downloads); real survey files can be uploaded."
    )
    tools = [
        ("tool_spectra.png", "Spectra", spectra_page,
         "Disentangle stellar spectra from Teff and log g (GANDALF-style adversarial autoencoders). "
         "Pick a star, **slide Teff and log g through the decoder** and compare with the true spectrum; "
         "train noAT / AT / mdAT models and compare their R² with the paper."),
        ("tool_explore.png", "Embedding explorer", explore_page,
         "UMAP / t-SNE / PCA of any run's latent z or input spectra, coloured by any label. **Lasso a group** to "
         "compare its spectra and labels with the rest, find nearest neighbours, tag and export (CSV, FITS, VOTable)."),
        ("tool_runs.png", "Runs", runs_page,
         "Every trained model with its data, configuration and metrics. Compare runs side by side, "
         "download a run as a zip, delete what you no longer need."),
    ]
    columns = st.columns(len(tools), gap="large")
    for column, (image, title, page, text) in zip(columns, tools):
        with column.container(border=True):
            if (ASSETS / image).exists():
                st.image(str(ASSETS / image), width="stretch")
            st.subheader(title)
            st.markdown(text)
            st.page_link(page, label=f"Open {title}", icon=":material/arrow_forward:")
    st.markdown("#### Coming")
    coming = [
        ("tool_multimodal.png", "Multimodal BHB",
         "Blue horizontal-branch stars from an SDSS spectrum plus a ugriz cutout, with attention maps."),
        ("tool_nebulae.png", "Nebulae (DANN)",
         "HII regions, planetary nebulae and supernova remnants across the model-to-observation gap."),
        ("tool_images.png", "Self-supervised images",
         "Pre-training on unlabelled cutouts, then classification from a hundred labels."),
    ]
    columns = st.columns(len(coming))
    for column, (image, title, text) in zip(columns, coming):
        with column:
            if (ASSETS / image).exists():
                st.image(str(ASSETS / image), width="stretch")
            st.markdown(f"**{title}** · *coming*")
            st.caption(text)
    st.divider()
    st.caption("The command line offers the same actions: `astrocore train disentangle ...`, `astrocore runs list`, "
               "`astrocore evaluate RUN`. Runs are saved in the runs folder shown in the sidebar.")


st.session_state["astrocore_app"] = True  # the pages use it to notice a direct URL visit (see pages/*.py)
home_page = st.Page(home, title="Home", icon=":material/home:", default=True)
navigation = st.navigation([home_page, spectra_page, *method_pages, explore_page, runs_page])

app_common.install_shipped_runs()
with st.sidebar:
    folder = runs_dir()
    st.caption(f"**Device:** {device()}")
    st.caption(f"**Runs folder:** `{folder.resolve()}`")

navigation.run()
