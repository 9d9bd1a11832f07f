"""The app's Streamlit-free logic, one module per page (``spectra``, ``explore``, ``runs``, and each
method's page), plus ``uploads`` and ``widgets`` (the Streamlit components pages share)."""
