-- CreateTable
CREATE TABLE "round_evaluation" (
    "id" TEXT NOT NULL,
    "round_id" TEXT NOT NULL,
    "site_id" TEXT NOT NULL,
    "bins" INTEGER NOT NULL,
    "requested_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "reported_at" TIMESTAMP(3),
    "counts" JSONB,
    "backend" TEXT,
    "seconds" DOUBLE PRECISION,

    CONSTRAINT "round_evaluation_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "round_evaluation_site_id_idx" ON "round_evaluation"("site_id");

-- CreateIndex
CREATE UNIQUE INDEX "round_evaluation_round_id_site_id_key" ON "round_evaluation"("round_id", "site_id");

-- AddForeignKey
ALTER TABLE "round_evaluation" ADD CONSTRAINT "round_evaluation_round_id_fkey" FOREIGN KEY ("round_id") REFERENCES "round"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "round_evaluation" ADD CONSTRAINT "round_evaluation_site_id_fkey" FOREIGN KEY ("site_id") REFERENCES "site"("id") ON DELETE NO ACTION ON UPDATE CASCADE;
