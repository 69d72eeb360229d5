-- CreateTable
CREATE TABLE "site_dataset_summary" (
    "site_id" TEXT NOT NULL,
    "study_id" TEXT NOT NULL,
    "reported_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "summary" JSONB NOT NULL,

    CONSTRAINT "site_dataset_summary_pkey" PRIMARY KEY ("site_id")
);

-- CreateIndex
CREATE INDEX "site_dataset_summary_study_id_idx" ON "site_dataset_summary"("study_id");

-- AddForeignKey
ALTER TABLE "site_dataset_summary" ADD CONSTRAINT "site_dataset_summary_site_id_fkey" FOREIGN KEY ("site_id") REFERENCES "site"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "site_dataset_summary" ADD CONSTRAINT "site_dataset_summary_study_id_fkey" FOREIGN KEY ("study_id") REFERENCES "study"("id") ON DELETE CASCADE ON UPDATE CASCADE;
