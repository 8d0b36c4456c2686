# Generates the PDF and DOCX files under tests/data/knowledge and tests/data/bench (committed).
# Run with a Python that has reportlab and python-docx: python gen_knowledge_test_files.py tests/data/knowledge
import sys
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas
from docx import Document

out = sys.argv[1]

# A two-page price list with a text layer.
c = canvas.Canvas(f"{out}/price-list.pdf", pagesize=A4)
c.setTitle("Skyline Meadows price list")
lines1 = ["Skyline Meadows price list", "", "Two bedroom apartments start at 1.2 crore rupees.",
          "Three bedroom apartments start at 1.8 crore rupees."]
y = 800
for line in lines1:
    c.drawString(72, y, line); y -= 18
c.showPage()
y = 800
for line in ["Parking and club membership", "", "Covered parking costs 4 lakh rupees per slot.",
             "Club membership is included for the first two years."]:
    c.drawString(72, y, line); y -= 18
c.showPage()
c.save()

# A 100-page PDF for the speed bench.
c = canvas.Canvas(f"{out}/../bench/100-pages.pdf", pagesize=A4)
words = ("apartment tower garden payment booking amenity clubhouse parking schedule visit "
         "brochure possession registration loan interest balcony kitchen lobby security lift").split()
for page in range(1, 101):
    y = 800
    c.drawString(72, y, f"Section {page}: project notes"); y -= 20
    for para in range(4):
        for line in range(8):
            text = " ".join(words[(page * 7 + para * 3 + line * 5 + k) % len(words)] for k in range(12))
            c.drawString(72, y, text); y -= 14
        y -= 10
    c.showPage()
c.save()

# A DOCX brochure with headings, a paragraph and a table.
d = Document()
d.add_heading("Skyline Heights brochure", level=1)
d.add_heading("Location", level=2)
d.add_paragraph("Skyline Heights is on Sarjapur Road in Bengaluru, ten minutes from the Outer Ring Road.")
d.add_heading("Floor plans", level=2)
d.add_paragraph("Every apartment has a balcony facing the central garden.")
t = d.add_table(rows=2, cols=2)
t.cell(0, 0).text = "Type"; t.cell(0, 1).text = "Carpet area"
t.cell(1, 0).text = "2 BHK"; t.cell(1, 1).text = "1,050 sq ft"
d.save(f"{out}/brochure.docx")
