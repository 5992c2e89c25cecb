from ernerf_core.stage_runner import run_from_snakemake
from ernerf_core.study.table import write_studies

out = snakemake.output
# each named output lists one path per subject, in the order of params.subjects
studies = {
    subject: dict(snakemake.params.layout[subject], table_csv=out.csv[i], table_md=out.md[i],
                  table_html=out.html[i], curves_png=out.curves[i], bars_dir=out.bars[i],
                  error_maps_dir=out.error_maps[i])
    for i, subject in enumerate(snakemake.params.subjects)
}
run_from_snakemake(snakemake, write_studies, studies=studies)
